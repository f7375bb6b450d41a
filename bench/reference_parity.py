"""Identical weights, identical outputs, waveform in: earmark against the reference pipelines at real clip lengths.

Clone the references side by side, give timm 0.4.5 and einops a private folder, and point --refs at the parent:

    git clone https://github.com/microsoft/unilm        REFS/unilm
    git clone https://github.com/Audio-WestlakeU/audiossl REFS/audiossl
    git clone https://github.com/Sara-Ahmed/ASiT         REFS/ASiT
    git clone https://github.com/YuanGongND/ssast        REFS/ssast
    git clone https://github.com/YuanGongND/ast          REFS/ast
    git clone https://github.com/yqcai888/easy_dcase_task1 REFS/easy_dcase_task1
    git clone https://github.com/fschmid56/PretrainedSED REFS/PretrainedSED
    git clone https://github.com/fschmid56/EfficientAT   REFS/EfficientAT
    git clone https://github.com/qiuqiangkong/audioset_tagging_cnn REFS/audioset_tagging_cnn
    git clone https://github.com/qiuqiangkong/torchlibrosa REFS/torchlibrosa
    pip install --no-deps --target REFS/deps einops timm==0.4.5 torchvision
    python bench/reference_parity.py --refs REFS

Each check builds a reference model, perturbs every parameter (and TF-SepNet's BatchNorm statistics) so a dropped
norm or gate would show, saves it in the official checkpoint layout, converts it with ``earmark convert`` and runs
both pipelines from the same waveform: the reference's own loader (fbank, padding or cutting to its trained length,
normalisation) and model, against earmark's frontend and the converted model with its family's length policy. Each
family is measured at 10 s, at a short length (5-6 s) and at the length it was trained on. Input is synthetic (two
tones over white noise). The references' training-only imports (Lightning, transformers, torchvision, wget,
dcase_util, torchaudio_augmentations) become empty modules, and ``torch._six``, which timm 0.4.5 imports and torch 2
removed, gets its aliases back. EfficientAT builds its layers with torchvision's ``ConvNormActivation``, so its check
imports the real torchvision from REFS/deps; PANNs' frontend (torchlibrosa) needs librosa installed.
"""

from __future__ import annotations

import argparse
import collections.abc
import contextlib
import importlib.util
import io
import math
import os
import sys
import tempfile
import types
from pathlib import Path
from typing import Callable, Iterator

import torch
import torchaudio

from earmark.audio.features_torch import Frontend
from earmark.engine import load_model
from earmark.students.convert import convert_tfsepnet
from earmark.teachers import create_teacher
from earmark.teachers.convert import convert

Row = tuple[str, str, str, float]  # reference pipeline, input, compared, max abs difference


class _Empty(types.ModuleType):
    """A stand-in for a package the reference imports but the compared pipeline never calls."""

    def __getattr__(self, name: str) -> "_Empty":
        if name.startswith("__"):  # no __file__ or __path__: inspect and the import system take it for a built-in module
            raise AttributeError(name)
        return _Empty(name)

    def __call__(self, *args, **kwargs) -> "_Empty":
        return self


def _install_stand_ins() -> None:
    six = types.ModuleType("torch._six")
    six.container_abcs, six.string_classes, six.int_classes = collections.abc, (str, bytes), int
    sys.modules["torch._six"] = six
    lightning = types.ModuleType("pytorch_lightning")
    lightning.LightningModule = torch.nn.Module
    sys.modules["pytorch_lightning"] = lightning
    for name in ("transformers", "transformers.optimization", "audiossl.utils", "audiossl.utils.common", "wget", "dcase_util",
                 "torchaudio_augmentations", "torchvision", "torchvision.transforms", "torchvision.transforms.functional",
                 "torchvision.datasets"):
        sys.modules[name] = _Empty(name)
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]


def _load(path: Path, name: str, *search: Path) -> types.ModuleType:
    """Import one reference file under a unique name, with its own folders first on the path."""
    sys.path[:0] = [str(p) for p in search]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _forget_packages(*names: str) -> None:
    """Drop earlier references' packages of the same name (``models``, ``helpers``) from the import cache."""
    for name in [m for m in sys.modules if m.split(".")[0] in names]:
        del sys.modules[name]


def _perturb(model: torch.nn.Module, scale: float = 0.02, keep: tuple[str, ...] = ()) -> torch.nn.Module:
    """Every floating parameter plus noise, except those under ``keep`` (a frontend's fixed weights)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if torch.is_floating_point(p) and not name.startswith(keep):  # SSAST keeps its input shape as int parameters
                p.add_(scale * torch.randn_like(p))
    return model.eval()


def _perturb_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Running statistics away from (0, 1), so a dropped or misplaced BatchNorm shows."""
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)):
            bn.running_mean.normal_(0, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
    return model


def _converted(fmt: str, ckpt: dict, tmp: Path, **options) -> torch.nn.Module:
    tmp.mkdir(parents=True, exist_ok=True)
    src = tmp / f"{fmt}.pt"
    torch.save(ckpt, src)
    path, _ = convert(fmt, src, tmp / f"{fmt}-earmark", **options)
    return load_model(path, "teacher")[0].eval()


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def waves(seconds: float, sample_rate: int, batch: int = 2) -> torch.Tensor:
    """(batch, samples): two tones with a slow swell over white noise, peak about 0.4, different per row."""
    t = torch.arange(round(seconds * sample_rate)) / sample_rate
    rows = [0.2 * torch.sin(2 * math.pi * (330 + 110 * i) * t) * (1 + 0.5 * torch.sin(2 * math.pi * 0.3 * t))
            + 0.1 * torch.sin(2 * math.pi * 2500 * t) + 0.05 * torch.randn(t.shape) for i in range(batch)]
    return torch.stack(rows)


def _kaldi_seconds(frames: int, sample_rate: int) -> float:
    """The clip length whose 25 ms / 10 ms Kaldi fbank has exactly ``frames`` frames."""
    return (round(0.025 * sample_rate) + (frames - 1) * round(0.010 * sample_rate)) / sample_rate


def _lengths(trained: float, short: float) -> Iterator[tuple[str, float]]:
    yield "10 s", 10.0
    yield f"{short:g} s", short
    if abs(trained - 10.0) > 1e-9:
        yield f"{trained:.3f} s (trained length)", trained


def _yuangong_loader(module: types.ModuleType, target_length: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """YuanGongND's ``AudiosetDataset._wav2fbank`` (mean removal, fbank, zero pad or cut) and ``__getitem__``'s normalisation."""
    dataset = object.__new__(getattr(module, "AudiosetDataset", None) or module.AudioDataset)  # AST's name, SSAST's name
    dataset.audio_conf, dataset.melbins = {"target_length": target_length}, 128

    def features(wave: torch.Tensor) -> torch.Tensor:
        rows = []
        for w in wave:
            module.torchaudio = types.SimpleNamespace(load=lambda _: (w[None], 16000), compliance=torchaudio.compliance)
            fbank, _ = dataset._wav2fbank("clip.wav")
            rows.append((fbank - (-4.2677393)) / (4.5689974 * 2))
        return torch.stack(rows)  # (B, frames, mel)
    return features


def check_beats(refs: Path, tmp: Path) -> list[Row]:
    beats = _load(refs / "unilm/beats/BEATs.py", "ref_beats", refs / "unilm/beats")
    rows = []
    for finetuned in (False, True):
        cfg = dict(input_patch_size=16, embed_dim=32, encoder_embed_dim=64, encoder_layers=2, encoder_attention_heads=4,
                   encoder_ffn_embed_dim=128, conv_pos=16, conv_pos_groups=4, relative_position_embedding=True,
                   num_buckets=320, max_distance=800, gru_rel_pos=True, deep_norm=True, layer_norm_first=False,
                   finetuned_model=finetuned, predictor_class=5)
        ref = _perturb(beats.BEATs(beats.BEATsConfig(cfg)), 0.05)
        ckpt = {"cfg": cfg, "model": ref.state_dict(), **({"label_dict": {i: f"c{i}" for i in range(5)}} if finetuned else {})}
        ours = _converted("beats", ckpt, tmp / f"beats{int(finetuned)}")
        for label, seconds in (("10 s (trained length)", 10.0), ("5.5 s", 5.5)):
            wave = waves(seconds, 16000)
            with torch.no_grad():
                theirs, _ = ref.extract_features(wave)  # their own kaldi fbank
                out = ours(Frontend("beats")(wave).unsqueeze(1))
            mine = torch.sigmoid(out.clip_logits) if finetuned else out.tokens
            what = "sigmoid clip probabilities, finetuned, 5 classes" if finetuned else "encoder tokens"
            rows.append(("unilm BEATs.extract_features, tiny cfg (2 DeepNorm layers, gated rel. positions)", label, what, _diff(theirs, mine)))
    return rows


def check_ast(refs: Path, tmp: Path) -> list[Row]:
    ast = _load(refs / "ast/src/models/ast_models.py", "ref_ast", refs / "deps")
    loader = _yuangong_loader(_load(refs / "ast/src/dataloader.py", "ref_ast_data"), 1024)
    ref = _perturb(ast.ASTModel(label_dim=7, fstride=10, tstride=10, input_fdim=128, input_tdim=1024,
                                imagenet_pretrain=False, audioset_pretrain=False, model_size="base384"))
    ours = _converted("ast", torch.nn.DataParallel(ref).state_dict(), tmp / "ast")
    rows = []
    for label, seconds in _lengths(_kaldi_seconds(1024, 16000), 6.2):
        wave = waves(seconds, 16000, batch=1)
        with torch.no_grad():
            theirs, out = ref(loader(wave)), ours(Frontend("ast")(wave).unsqueeze(1))
        rows.append(("YuanGongND/ast dataloader + ASTModel base384, stride 10, 1024 frames", label,
                     f"clip logits (scale {theirs.abs().max():.1f})", _diff(theirs, out.clip_logits)))
    return rows


def _final_tokens(vit: torch.nn.Module) -> dict:
    seen: dict = {}
    vit.norm.register_forward_hook(lambda module, inputs, output: seen.__setitem__("tokens", output))
    return seen


def check_ssast(refs: Path, tmp: Path) -> list[Row]:
    ssast = _load(refs / "ssast/src/models/ast_models.py", "ref_ssast", refs / "deps")
    data = _load(refs / "ssast/src/dataloader.py", "ref_ssast_data")
    rows = []
    for fshape, tshape in ((16, 16), (128, 2)):
        kind = "patch 16x16" if fshape == 16 else "frame 128x2"
        shape = dict(fshape=fshape, tshape=tshape, fstride=fshape, tstride=tshape, input_fdim=128, model_size="tiny")
        pretrained = torch.nn.DataParallel(_perturb(ssast.ASTModel(pretrain_stage=True, input_tdim=1024, **shape)))
        converted = convert("ssast", _saved(pretrained.state_dict(), tmp / f"ssast{fshape}.pth"), tmp / f"ssast{fshape}")[0]
        for target, lengths in ((1024, _lengths(_kaldi_seconds(1024, 16000), 5.5)), (512, [("512 frames, length=resize", _kaldi_seconds(512, 16000))])):
            ref = ssast.ASTModel(label_dim=5, pretrain_stage=False, input_tdim=target, load_pretrained_mdl_path=str(tmp / f"ssast{fshape}.pth"), **shape).eval()
            ref.mlp_head = torch.nn.Identity()
            seen = _final_tokens(ref.v)
            ours, meta = load_model(converted, "teacher")
            if target != 1024:  # fine-tuning at another length: SSAST cuts its position grid around the centre
                resized = create_teacher(meta.model, **{**meta.model_args["overrides"], "frontend": meta.frontend, "length": "resize"})
                resized.load_state_dict(ours.state_dict())
                ours = resized
            for label, seconds in lengths:
                wave = waves(seconds, 16000, batch=1)
                with torch.no_grad():
                    mean = ref(_yuangong_loader(data, target)(wave), task="ft_avgtok")
                    out = ours.eval()(Frontend("ast")(wave).unsqueeze(1))
                rows += [(f"YuanGongND/ssast dataloader + ASTModel tiny, {kind}, ft_avgtok", label, "mean token",
                          _diff(mean, out.embedding)),
                         ("", "", "patch tokens", _diff(seen["tokens"][:, 2:], out.tokens))]
    return rows


def _saved(state: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def check_asit(refs: Path, tmp: Path) -> list[Row]:
    vit = _load(refs / "ASiT/vision_transformer.py", "ref_asit", refs / "ASiT")
    transforms = _load(refs / "ASiT/data_transformations.py", "ref_asit_data")
    loader = object.__new__(transforms.DataAugmentation)
    loader.num_frames, loader.num_mel_bins = 592, 128
    ref = _perturb(vit.vit_small(audio_size=[592, 128], in_chans=1))
    ours = _converted("asit", {"teacher": {f"backbone.{k}": v for k, v in ref.state_dict().items()}}, tmp / "asit", sample_rate=32000)
    rows = []
    for label, seconds in _lengths(_kaldi_seconds(592, 32000), 5.0):
        wave = waves(seconds, 32000)
        fbank = torch.stack([(loader._wav2fbank(w[None]) - (-4.2677393)) / (4.5689974 * 2) for w in wave])  # (B, 592, mel)
        with torch.no_grad():
            theirs, out = ref(fbank.unsqueeze(1)), ours(Frontend("asit32k")(wave).unsqueeze(1))
        rows += [("Sara-Ahmed/ASiT _wav2fbank (32 kHz) + vit_small, 592 frames", label, "cls token", _diff(theirs[:, 0], out.embedding)),
                 ("", "", "patch tokens", _diff(theirs[:, 1:], out.tokens))]
    return rows


def check_atst(refs: Path, tmp: Path) -> list[Row]:
    root = refs / "audiossl"
    clip = _load(root / "audiossl/models/atst/audio_transformer.py", "ref_atst_clip", refs / "deps", root)
    frame = _load(root / "audiossl/methods/atstframe/downstream/comparison_models/models/frame_atst.py", "ref_atst_frame", root)
    common = _load(root / "audiossl/transforms/common.py", "ref_atst_transforms", root)
    melspec = torchaudio.transforms.MelSpectrogram(16000, f_min=60, f_max=7800, hop_length=160, win_length=1024, n_fft=1024, n_mels=64)
    to_db, minmax = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=80), common.MinMax(min=-79.6482, max=50.6842)
    rows = []
    for fmt, ref in (("atst-clip", clip.AST_small(use_cls=True)), ("atst-frame", frame.FrameAST_small())):
        ref = _perturb(ref)
        lightning = {"state_dict": {f"model.teacher.encoder.{k}": v for k, v in ref.state_dict().items()}, "epoch": 1}
        ours = _converted(fmt, lightning, tmp / fmt)
        for label, seconds in (("10 s (trained length)", 10.0), ("6 s", 6.0)):
            wave = waves(seconds, 16000)
            mel = minmax(to_db(melspec(wave.unsqueeze(1))))  # atstframe/embedding.py's transform, (B, 1, 64, T)
            length = torch.full((wave.shape[0],), mel.shape[-1])
            with torch.no_grad():
                out = ours(Frontend("atst")(wave).unsqueeze(1))
                if fmt == "atst-clip":
                    name, pooled, what = "audiossl AST_small (ATST-Clip) + embedding.py transform", ref(mel, length=length), "cls token"
                    tokens = ref.get_intermediate_layers(mel, length, n=1)[0][:, 1:]
                else:
                    name, what = "audiossl FrameAST_small (ATST-Frame) + embedding.py transform", "mean frame token"
                    pooled = ref.get_intermediate_layers(mel, length, n=1, scene=True)
                    tokens = ref.get_intermediate_layers(mel, length, n=1, scene=False)
            rows += [(name, label, what, _diff(pooled, out.embedding)), ("", "", "frame tokens", _diff(tokens, out.tokens))]
    return rows


def check_tfsepnet(refs: Path, tmp: Path) -> list[Row]:
    root = refs / "easy_dcase_task1"
    backbones = _load(root / "model/backbones.py", "ref_tfsepnet", root)
    mel = _load(root / "util/spec_extractor.py", "ref_cpmel").CpMel(n_mels=512).eval()
    ref = _perturb_batchnorm(_perturb(backbones.TFSepNet(num_classes=10, base_channels=64, depth=17), 0.1))
    src = _saved({"state_dict": {f"backbone.{k}": v for k, v in ref.state_dict().items()}, "epoch": 1}, tmp / "tfsepnet.ckpt")
    ours = load_model(convert_tfsepnet(src, tmp / "tfsepnet")[0], "student")[0].eval()
    rows = []
    for label, seconds in (("1 s (trained length)", 1.0), ("5 s", 5.0), ("10 s", 10.0)):
        wave = waves(seconds, 32000)
        with torch.no_grad():
            theirs = ref(mel(wave).unsqueeze(1))
            out = ours(Frontend("tfsepnet")(wave).unsqueeze(1))
        rows.append(("yqcai888/easy_dcase_task1 CpMel(512) + TFSepNet-64 (Lightning backbone.*)", label,
                     f"logits (scale {theirs.abs().max():.1f})", _diff(theirs, out.clip_logits)))
    return rows


def check_pretrainedsed(refs: Path, tmp: Path) -> list[Row]:
    """PredictionsWrapper over each wrapper, with its own mel_forward, saved as its release files name the keys."""
    root = refs / "PretrainedSED"
    sys.path.insert(0, str(root))
    _forget_packages("models")  # other references' ``models``
    from models.asit.ASIT_wrapper import ASiTWrapper
    from models.atstframe.ATSTF_wrapper import ATSTWrapper
    from models.beats.BEATs_wrapper import BEATsWrapper
    from models.prediction_wrapper import PredictionsWrapper

    release = {"atst": ("pretrainedsed-atst", ATSTWrapper, "model.atst."), "beats": ("pretrainedsed-beats", BEATsWrapper, "model.model."),
               "asit": ("pretrainedsed-asit", ASiTWrapper, "model.")}  # how load_checkpoint's renames undo in the release files
    rows = []
    for family, (fmt, wrapper, prefix) in release.items():
        ref = _perturb(PredictionsWrapper(wrapper()), 0.01)
        inner = f"model.{family}."
        state = {(prefix + k[len(inner):] if k.startswith(inner) else k): v for k, v in ref.state_dict().items()}
        ours = _converted(fmt, state, tmp / family)
        frontend = Frontend(ours.frontend)
        lengths = [("10 s (trained length)", 10.0, 1.0), ("5 s", 5.0, 1.0), ("5 s at x0.0005 (dB clamp)", 5.0, 5e-4),
                   (f"{_kaldi_seconds(592, 16000):.3f} s (592 frames)", _kaldi_seconds(592, 16000), 1.0)]
        for label, seconds, gain in lengths:
            wave = gain * waves(seconds, 16000)
            with torch.no_grad():  # one clip per call: ATSTMel's top_db takes one maximum over its whole batch
                strong, weak = zip(*(ref(ref.mel_forward(w[None])) for w in wave))
                out = ours(frontend(wave).unsqueeze(1))
            name = f"fschmid56/PretrainedSED PredictionsWrapper({wrapper.__name__}()) + mel_forward, keys {prefix}*"
            rows += [(name, label, "strong (frame) logits, 250 steps", _diff(torch.cat(strong).transpose(1, 2), out.frame_logits)),
                     ("", "", "weak (clip) logits", _diff(torch.cat(weak), out.clip_logits))]
    return rows


def check_efficientat(refs: Path, tmp: Path) -> list[Row]:
    """models/mn/model.py get_model (MLP head) with AugmentMelSTFT in eval, saved as load_state_dict_from_url reads it."""
    root = refs / "EfficientAT"
    stand_ins = {name: sys.modules.pop(name) for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]}
    _forget_packages("models", "helpers")
    sys.path[:0] = [str(refs / "deps"), str(root)]
    cwd = Path.cwd()
    os.chdir(root)  # helpers/utils.py reads metadata/class_labels_indices.csv at import
    try:
        from models.mn.model import get_model
        from models.preprocess import AugmentMelSTFT
    finally:
        os.chdir(cwd)
        sys.modules.update(stand_ins)
    mel = AugmentMelSTFT(n_mels=128, sr=32000, win_length=800, hopsize=320).eval()
    rows = []
    for width in (0.4, 1.0):
        with contextlib.redirect_stdout(io.StringIO()):  # get_model prints the network
            ref = _perturb_batchnorm(_perturb(get_model(width_mult=width, head_type="mlp"), 0.05))
        ours = _converted("efficientat", ref.state_dict(), tmp / f"mn{width}")
        for label, seconds in (("10 s (trained length)", 10.0), ("3 s", 3.0)):
            wave = waves(seconds, 32000)
            with torch.no_grad():
                theirs, embedding = ref(mel(wave).unsqueeze(1))
                out = ours(Frontend("efficientat")(wave).unsqueeze(1))
            rows += [(f"fschmid56/EfficientAT AugmentMelSTFT + get_model(width_mult={width}), MLP head", label,
                      f"clip logits (scale {theirs.abs().max():.1f})", _diff(theirs, out.clip_logits)),
                     ("", "", "pooled features", _diff(embedding, out.embedding))]
    return rows


def _framewise(probabilities: torch.Tensor, frames: int) -> torch.Tensor:
    """PANNs' framewise_output from segment probabilities: each repeated 32 times, the last repeated to ``frames``."""
    upsampled = probabilities.repeat_interleave(32, dim=1)
    return torch.cat([upsampled, upsampled[:, -1:].expand(-1, frames - upsampled.shape[1], -1)], dim=1)


def check_panns(refs: Path, tmp: Path) -> list[Row]:
    """pytorch/models.py Cnn14 and Cnn14_DecisionLevelMax / Att, waveform in (torchlibrosa frontend), saved as main.py saves."""
    sys.path[:0] = [str(refs / "torchlibrosa"), str(refs / "audioset_tagging_cnn/pytorch")]
    models = _load(refs / "audioset_tagging_cnn/pytorch/models.py", "ref_panns")
    frontend = ("spectrogram_extractor", "logmel_extractor")
    rows = []
    for cls, fmt in (("Cnn14", "panns"), ("Cnn14_DecisionLevelMax", "panns-sed"), ("Cnn14_DecisionLevelAtt", "panns-sed")):
        ref = getattr(models, cls)(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14000, classes_num=527)
        ref = _perturb_batchnorm(_perturb(ref, 0.01, keep=frontend))
        with torch.no_grad():  # bn0 as trained: decibels of about -50 +- 20
            ref.bn0.running_mean.uniform_(-60, -40)
            ref.bn0.running_var.uniform_(200, 600)
        ours = _converted(fmt, {"iteration": 0, "model": ref.state_dict()}, tmp / cls)
        seen: dict = {}  # the pre-sigmoid logits: fc_audioset's output, or AttBlock's cla (B, C, segments)
        head = ref.att_block.cla if hasattr(ref, "att_block") else ref.fc_audioset
        head.register_forward_hook(lambda module, inputs, output: seen.__setitem__("logits", output))
        for label, seconds in (("10 s (trained length)", 10.0), ("3 s", 3.0)):
            wave = waves(seconds, 32000)
            with torch.no_grad():
                theirs = ref(wave)
                out = ours(Frontend("panns")(wave).unsqueeze(1))
            logits = seen["logits"].transpose(1, 2) if hasattr(ref, "att_block") else seen["logits"]
            name = f"qiuqiangkong/audioset_tagging_cnn {cls} (torchlibrosa frontend), keys model.*"
            rows += [(name, label, f"{'clip' if cls == 'Cnn14' else 'segment'} logits (scale {logits.abs().max():.1f})",
                      _diff(logits, out.clip_logits if cls == "Cnn14" else out.frame_logits)),
                     ("", "", "clipwise_output", _diff(theirs["clipwise_output"], torch.sigmoid(out.clip_logits)))]
            if "framewise_output" in theirs:
                frames = theirs["framewise_output"].shape[1]
                rows.append(("", "", "framewise_output", _diff(theirs["framewise_output"], _framewise(torch.sigmoid(out.frame_logits), frames))))
    return rows


CHECKS = {"beats": check_beats, "asit": check_asit, "atst": check_atst, "ssast": check_ssast, "ast": check_ast, "tfsepnet": check_tfsepnet,
          "pretrainedsed": check_pretrainedsed, "efficientat": check_efficientat, "panns": check_panns}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refs", type=Path, required=True, help="folder holding the cloned references and deps/")
    parser.add_argument("--only", nargs="*", choices=sorted(CHECKS), default=sorted(CHECKS))
    args = parser.parse_args()
    _install_stand_ins()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, synthetic input (tones over noise)")
    print("| reference pipeline | input | compared | max abs difference |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            for reference, length, compared, diff in CHECKS[name](args.refs, Path(tmp) / name):
                print(f"| {reference} | {length} | {compared} | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
