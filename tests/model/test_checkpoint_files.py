"""Loading checkpoints that are damaged, incomplete or described by keywords: one clear error per
bad file naming it (never the advice to unpickle with weights_only=False), keywords that complete
a checkpoint without hyper_parameters, and keywords that contradict it refused."""

import os
import shutil
import zipfile
from fractions import Fraction

import pytest
import torch

from vqfast import VQShape, VQShapeText
from vqfast.model.checkpoint import CorruptFileError, recorded_keywords

COMPLETE = "is not a complete"


def check_against_fixture(model, io):
    """The authors' codes, tokens and losses on their fixture (test_parity checks everything)."""
    with torch.no_grad():
        rep, out = model(io["x"], mode="tokenize")
        _, losses = model(io["x"], mode="evaluate")
    assert torch.equal(out["code_idx"], io["code_idx"])
    torch.testing.assert_close(rep["token"], io["token"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.total_loss(losses), io["total_loss"], rtol=1e-5, atol=0)


@pytest.fixture(scope="module")
def ckpt_bytes(ckpt_path):
    return ckpt_path.read_bytes()


@pytest.fixture(scope="module")
def hparams(ckpt_path):
    return torch.load(ckpt_path, weights_only=True)["hyper_parameters"]


@pytest.fixture(scope="module")
def pretrained(ckpt_path, tmp_path_factory):
    return VQShape.from_official_checkpoint(ckpt_path).save_pretrained(
        tmp_path_factory.mktemp("pretrained") / "model")


def assert_one_clear_message(error, path, *words):
    message = str(error.value)
    assert str(path) in message and "truncated or corrupt" in message, message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message
    e = error.value  # no chained traceback of torch's own error
    assert e.__cause__ is None and (e.__context__ is None or e.__suppress_context__)
    for word in words:
        assert word in message, message


def flipped_member(data: bytes, path) -> bytes:
    """``data`` with 64 bytes flipped inside a tensor's storage (the zip stays readable)."""
    path.write_bytes(data)
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 16
    damaged = bytearray(data)
    damaged[start : start + 64] = bytes(b ^ 0xFF for b in damaged[start : start + 64])
    return bytes(damaged)


@pytest.mark.parametrize("case,words", [
    ("truncated", ["cut short"]),
    ("first-100-bytes", ["cut short"]),
    ("random-bytes", ["not a torch.save file"]),
    ("empty", ["empty, 0 bytes"]),
    ("flipped-bytes", ["CRC"]),
])
def test_damaged_official_checkpoints_get_one_clear_message(ckpt_bytes, tmp_path, case, words):
    path = tmp_path / f"{case}.ckpt"
    data = {
        "truncated": ckpt_bytes[: len(ckpt_bytes) // 2],
        "first-100-bytes": ckpt_bytes[:100],
        "random-bytes": os.urandom(4096),
        "empty": b"",
        "flipped-bytes": flipped_member(ckpt_bytes, path) if case == "flipped-bytes" else b"",
    }[case]
    path.write_bytes(data)
    for cls in (VQShape, VQShapeText):
        with pytest.raises(CorruptFileError) as error:
            cls.from_official_checkpoint(path)
        assert_one_clear_message(error, path, COMPLETE, "PyTorch checkpoint", "re-download",
                                 *words)


def test_a_damaged_pickle_inside_the_archive_is_corrupt_not_unsafe(ckpt_bytes, tmp_path):
    path = tmp_path / "pickle.ckpt"
    path.write_bytes(ckpt_bytes)
    with zipfile.ZipFile(path) as archive:
        members = {i.filename: archive.read(i) for i in archive.infolist()}
    name = next(n for n in members if n.endswith("data.pkl"))
    members[name] = members[name][:40] + b"\xff" * 16 + members[name][56:]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:  # fresh, valid CRCs
        for member, content in members.items():
            archive.writestr(member, content)
    with pytest.raises(CorruptFileError) as error:
        VQShape.from_official_checkpoint(path)
    assert_one_clear_message(error, path, COMPLETE, "PyTorch checkpoint")


def test_a_checkpoint_holding_code_is_refused_without_the_unsafe_advice(tmp_path):
    path = tmp_path / "code.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": Fraction(1, 3)}, path)  # a class: a global
    with pytest.raises(ValueError, match=r"other than tensors .*fractions.Fraction") as error:
        VQShape.from_official_checkpoint(path)
    assert "weights_only=False" not in str(error.value) and str(path) in str(error.value)
    assert not isinstance(error.value, CorruptFileError)


@pytest.mark.parametrize("damage", ["truncated", "empty"])
@pytest.mark.parametrize("name,kind", [("model.safetensors", "safetensors file"),
                                       ("config.json", "JSON file")])
def test_damaged_pretrained_files_get_one_clear_message(pretrained, tmp_path, name, kind, damage):
    folder = tmp_path / "model"
    shutil.copytree(pretrained, folder)
    path = folder / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"")
    for cls in (VQShape, VQShapeText):
        with pytest.raises(CorruptFileError) as error:
            cls.from_pretrained(folder)
        assert_one_clear_message(error, path, COMPLETE, kind, "save_pretrained")


def test_a_config_json_without_settings_is_named(pretrained, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(pretrained, folder)
    (folder / "config.json").write_text('{"model_type": "VQShape"}')
    with pytest.raises(CorruptFileError, match=r"config.json is not a vqfast config.json"):
        VQShape.from_pretrained(folder)


def test_intact_files_still_load(ckpt_path, pretrained, io):
    check_against_fixture(VQShape.from_official_checkpoint(ckpt_path), io)
    check_against_fixture(VQShape.from_pretrained(pretrained), io)


# ---- keywords: what a checkpoint lacks, and what contradicts it ------------------------------


def without_hparams(ckpt_path, tmp_path, drop=None):
    ckpt = torch.load(ckpt_path, weights_only=True)
    if drop is None:
        del ckpt["hyper_parameters"]
    else:
        for key in drop:
            del ckpt["hyper_parameters"][key]
    path = tmp_path / "bare.ckpt"
    torch.save(ckpt, path)
    return path


def test_keywords_complete_a_checkpoint_without_hyper_parameters(ckpt_path, hparams, io,
                                                                 tmp_path):
    path = without_hparams(ckpt_path, tmp_path)
    keywords = {k: value for k, (_, value) in recorded_keywords(hparams).items()}
    model = VQShape.from_official_checkpoint(path, **keywords)
    model.loss_weights.update(lambda_dist=hparams["lambda_dist"])  # a training-script setting
    check_against_fixture(model, io)


def test_a_checkpoint_without_hyper_parameters_names_what_to_pass(ckpt_path, hparams, tmp_path):
    path = without_hparams(ckpt_path, tmp_path)
    with pytest.raises(ValueError, match="has no hyper_parameters") as error:
        VQShape.from_official_checkpoint(path, dim_embedding=hparams["dim_embedding"])
    message = str(error.value)
    assert str(path) in message and "num_enc_head=..." in message
    assert "dim_embedding=..." not in message  # given
    assert "head counts" in message  # the weights cannot tell them


def test_keywords_fill_the_entries_a_checkpoint_lacks(ckpt_path, hparams, io, tmp_path):
    path = without_hparams(ckpt_path, tmp_path, drop=["num_transformer_dec_heads", "len_s"])
    with pytest.raises(ValueError, match=r"without num_dec_head, len_s"):
        VQShape.from_official_checkpoint(path)
    model = VQShape.from_official_checkpoint(
        path, num_dec_head=hparams["num_transformer_dec_heads"], len_s=hparams["len_s"])
    check_against_fixture(model, io)


def test_a_head_count_that_contradicts_the_checkpoint_is_refused(ckpt_path, hparams):
    heads = hparams["num_transformer_enc_heads"]
    other = 1 if heads != 1 else 2
    with pytest.raises(ValueError) as error:
        VQShape.from_official_checkpoint(ckpt_path, num_enc_head=other)
    message = str(error.value)
    assert f"num_enc_head={other}" in message
    assert f"num_transformer_enc_heads={heads}" in message and str(ckpt_path) in message
    # the same value, and settings that only shape further training, are accepted
    model = VQShape.from_official_checkpoint(ckpt_path, num_enc_head=heads, mask_ratio=0.5,
                                             lambda_commit=0.5)
    assert model.config["mask_ratio"] == 0.5 and model.config["lambda_commit"] == 0.5


def test_a_head_count_that_contradicts_a_saved_folder_is_refused(pretrained):
    saved = VQShape.from_pretrained(pretrained).config["num_dec_head"]
    other = 1 if saved != 1 else 2
    with pytest.raises(ValueError, match=rf"num_dec_head={other} but it has "
                                         rf"num_dec_head={saved}"):
        VQShape.from_pretrained(pretrained, num_dec_head=other)
