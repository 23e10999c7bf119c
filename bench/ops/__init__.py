"""One benchmark module per vqfast op, all on the shared harness ``bench/_harness.py``.

Each module builds the rows of its op for inputs it is given (``run``) and prints them
(``print_rows``); ``bench/quantize.py`` (nearest_code, vq_loss) and ``bench/subsequence.py``
(extract_subsequence) make the inputs, drive them and write the JSON.
"""
