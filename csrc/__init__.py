"""C++ sources of vqfast's compiled ops; built on first use by ``vqfast.ops._extension``."""
