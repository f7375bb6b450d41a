"""The `earmark` command's shared behaviour: help with defaults, logging options, error policy, missing extras, configs."""

import argparse
import importlib
import json
import shlex
import subprocess
import sys

import numpy as np
import pytest

from earmark.cli import VERBS, _is_user_error, main, verb_parser
from earmark.engine import add_config_options, config_from_args
from earmark.teachers.finetune import FinetuneConfig

from .runtime.models import export_detector


def earmark(*args: str, block: tuple[str, ...] = (), timeout: float = 300) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter; ``block`` makes those top-level modules unimportable, as in an install without them."""
    code = (f"import sys; sys.modules.update(dict.fromkeys({list(block)!r})); "
            f"from earmark.cli import main; sys.exit(main({list(args)!r}))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_option_of_every_verb_has_help_and_shows_its_default(verb):
    parser = verb_parser(verb, importlib.import_module(VERBS[verb][0]))
    parsers = [parser] + [p for a in parser._actions if isinstance(a, argparse._SubParsersAction) for p in a.choices.values()]
    for p in parsers:
        text = p.format_help()
        for action in p._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"earmark {verb}: {action.option_strings or action.dest} has no help"
            if action.option_strings and action.nargs != 0 and action.default not in (None, "", [], argparse.SUPPRESS):
                assert "default" in p._get_formatter()._get_help_string(action) % {"default": ""}, f"{verb} {action.option_strings}"
        assert "--log-level" in text or p is not parser


def test_generated_options_show_the_dataclass_defaults():
    text = verb_parser("distill", importlib.import_module(VERBS["distill"][0])).format_help()
    for fragment in ("--epochs EPOCHS", "(default: 30)", "--lr LR", "(default: 0.004)", "--kd-lambda KD_LAMBDA", "(default: 0.02 to classify, 0.1 to detect)",
                     "--out OUT", "(required, or from --config)", "--config FILE"):
        assert fragment in " ".join(text.split()), fragment
    listen = " ".join(verb_parser("listen", importlib.import_module(VERBS["listen"][0])).format_help().split())
    assert "sample rate of PCM on stdin (default: 16000)" in listen
    data = verb_parser("data", importlib.import_module(VERBS["data"][0]))
    synth = next(a for a in data._actions if isinstance(a, argparse._SubParsersAction)).choices["synth"]
    assert "OUT/backgrounds/" in " ".join(synth.format_help().split())  # what `data synth` writes, all of it


def test_a_config_json_repeats_a_run_and_flags_override_it(tmp_path):
    first = FinetuneConfig("acmsskd_tiny", "data/clips.csv", str(tmp_path / "a"), overrides={"depth": 2}, epochs=3, lr=1e-3,
                           objective="detect", mix_snr=(3.0, 9.0))
    (tmp_path / "config.json").write_text(json.dumps(first.__dict__))
    parser = argparse.ArgumentParser()
    add_config_options(parser, FinetuneConfig, {"teacher": "t", "data": "d", "out": "o", "epochs": "e", "lr": "l",
                                                "objective": "m", "overrides": "j", "mix_snr": "s"}, positional=("teacher",))
    again = config_from_args(FinetuneConfig, parser.parse_args(["--config", str(tmp_path / "config.json"), "--epochs", "5"]))
    assert again == FinetuneConfig(**{**first.__dict__, "epochs": 5})
    snr = config_from_args(FinetuneConfig, parser.parse_args(["--config", str(tmp_path / "config.json"), "--mix-snr", "0", "6"]))
    assert snr.mix_snr == (0.0, 6.0)  # a range option takes its two values
    fresh = config_from_args(FinetuneConfig, parser.parse_args(["acmsskd_tiny", "--data", "d.csv", "--out", "o"]))
    assert fresh == FinetuneConfig("acmsskd_tiny", "d.csv", "o")  # every default comes from the dataclass
    with pytest.raises(ValueError, match="missing DATA, OUT"):
        config_from_args(FinetuneConfig, parser.parse_args(["acmsskd_tiny"]))


def test_own_bad_input_is_one_line_and_exit_1(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "missing.csv")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("earmark data: ") and "no such manifest" in err


def test_errors_raised_inside_libraries_are_not_user_errors():
    from earmark.audio.manifest import read_manifest

    with pytest.raises(FileNotFoundError) as ours:
        read_manifest("/nonexistent/clips.csv")
    with pytest.raises(ValueError) as numpys:
        np.zeros(3).reshape(2, 2)
    assert _is_user_error(ours.value) and not _is_user_error(numpys.value)


def test_an_unexpected_exception_keeps_its_traceback(tmp_path):
    """A hand-edited checkpoint that makes torch itself fail: the user sees where, not one opaque line."""
    from earmark.engine import save_checkpoint
    from earmark.students import create_student, student_checkpoint_meta

    model = create_student("tfsepnet16", 3)
    path = save_checkpoint(tmp_path / "ckpt", model.state_dict(), student_checkpoint_meta(model, "tfsepnet16", ["a", "b", "c"]))
    meta = json.loads((path / "earmark.json").read_text())
    meta["model_args"]["base_channels"] = -16
    (path / "earmark.json").write_text(json.dumps(meta))
    run = earmark("complexity", str(path))
    assert run.returncode != 0 and "Traceback (most recent call last)" in run.stderr and "torch" in run.stderr


def test_version_names_earmark_and_its_libraries():
    run = earmark("--version")
    assert run.returncode == 0 and run.stdout.startswith("earmark 0.") and "onnxruntime" in run.stdout and "torch" in run.stdout


@pytest.mark.parametrize("command", [["distill", "--data", "d.csv", "--out", "o"], ["complexity", "tfsepnet16"], ["demo", "--out", "o"],
                                     ["finetune", "acmsskd_tiny", "--data", "d.csv", "--out", "o"]])
def test_a_training_verb_without_torch_names_the_extra(command, tmp_path):
    verb = command[0]
    run = earmark(*command, block=("torch",))
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip() == f"earmark {verb}: this needs torch, which the edge install leaves out; install it with: pip install 'earmark[train]'"


@pytest.fixture(scope="module")
def tone_model(tmp_path_factory):
    return export_detector(tmp_path_factory.mktemp("model") / "tones.onnx")


def test_bench_and_check_run_without_torch(tone_model, tmp_path):
    bench = earmark("bench", str(tone_model), "--runs", "3", "--json", str(tmp_path / "b.json"), block=("torch",))
    assert bench.returncode == 0, bench.stderr
    figures = json.loads((tmp_path / "b.json").read_text())
    rows = figures["rows"]
    assert {r["backend"] for r in rows} == {"onnxruntime"} and all(r["p50_ms"] > 0 and r["cpu_p50_ms"] > 0 for r in rows)
    assert set(figures["cpu"]) >= {"avx2", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp"} and "flags:" in bench.stdout
    check = earmark("export", "--check", "tensorrt", str(tone_model), block=("torch",))
    assert check.returncode == 0 and "nothing TensorRT would refuse" in check.stdout, check.stderr


def test_eval_of_an_onnx_file_on_clips_runs_without_torch(tone_model, tmp_path):
    import soundfile as sf

    from .runtime.models import SAMPLE_RATE, tone_track

    sf.write(tmp_path / "a.wav", tone_track(1.0, [(0.2, 0.8, 1000.0)]), SAMPLE_RATE)
    (tmp_path / "clips.csv").write_text("filename,fold,target,category\na.wav,1,0,tone_1k\n")
    run = earmark("eval", str(tone_model), str(tmp_path / "clips.csv"), "--out", str(tmp_path / "ev"), block=("torch",))
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "ev" / "results.json").read_text())["accuracy"] == 1.0


def test_listen_mqtt_without_paho_names_the_mqtt_extra(tone_model, tmp_path):
    wav = tmp_path / "silence.wav"
    import soundfile as sf

    sf.write(wav, np.zeros(16000, np.float32), 16000)
    run = earmark("listen", str(tone_model), "--source", str(wav), "--fast", "--mqtt", "localhost:1", block=("paho",))
    assert run.returncode == 1 and "pip install 'earmark[mqtt]'" in run.stderr and "Traceback" not in run.stderr


def test_library_chatter_is_quiet_by_default_and_shown_with_v():
    speak = ("from nncf.common.logging import nncf_logger; nncf_logger.info('nncf-info'); nncf_logger.warning('nncf-warn'); "
             "from nncf.common.logging.track_progress import track; list(track(range(3), description='nncf-bar')); "
             "logging.getLogger('torch.utils.cpp_extension').warning('no-cuda'); logging.getLogger('earmark.distill').info('ours'); ")
    code = ("import sys, logging; from earmark.cli import configure_logging; configure_logging('distill'); import nncf, torch; "
            + speak + "print('--', file=sys.stderr); configure_logging('distill', verbose=1); " + speak)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    quiet, loud = run.stderr.split("--\n")
    assert run.stdout == ""  # NNCF printed its INFO records to stdout on its own
    assert [line for line in quiet.splitlines() if "nncf-bar" not in line] == ["earmark distill: ours"]  # its bars on stderr
    expected = ["nncf: nncf-info", "nncf: warning: nncf-warn", "torch: warning: no-cuda", "earmark distill: ours"]
    assert [line for line in loud.splitlines() if line in expected] == expected  # -v also shows torch's own INFO records


def test_quiet_keeps_results_and_drops_info(tmp_path):
    from earmark.audio.synth import synthesize

    data = synthesize(tmp_path / "data", seed=0, clips_per_class=2, soundscapes=1)
    run = earmark("data", "check", str(data.clips_csv), "-q")
    assert run.returncode == 0 and "16 clips" in run.stdout and run.stderr == ""


def test_predict_takes_a_student_as_teacher_as_distill_does(tmp_path):
    from earmark.audio.manifest import read_manifest
    from earmark.audio.synth import synthesize
    from earmark.engine import save_checkpoint
    from earmark.students import create_student, student_checkpoint_meta
    from earmark.teachers.cache import TeacherCache

    data = synthesize(tmp_path / "data", seed=0, clips_per_class=2, soundscapes=1)
    manifest = read_manifest(data.clips_csv)
    labels = manifest.labels.to_list()
    model = create_student("tfsepnet16", len(labels))
    student = save_checkpoint(tmp_path / "student", model.state_dict(), student_checkpoint_meta(model, "tfsepnet16", labels))
    assert main(["predict", str(student), "--data", str(data.clips_csv), "--out", str(tmp_path / "cache"), "--workers", "0"]) == 0
    assert TeacherCache.open(tmp_path / "cache").lookup([manifest.clips[0].id]).shape == (1, len(labels))


def test_a_frame_teacher_for_a_clip_student_is_explained(tmp_path):
    import torch

    from earmark.audio import PRESETS
    from earmark.distill.cli import task_mismatch
    from earmark.engine import CheckpointMeta, save_checkpoint

    def teacher(task: str):
        meta = CheckpointMeta(family="teacher", model="atst_frame_tiny", model_args={}, frontend=PRESETS["atst"].to_dict(),
                              labels=["a"], task=task, objective="detect")
        return str(save_checkpoint(tmp_path / task, {"w": torch.zeros(1)}, meta))

    frame, clip = teacher("frame"), teacher("clip")
    assert "pass --task frame" in task_mismatch(frame, "clip")
    assert "learns its frames from the strong labels only" in task_mismatch(clip, "frame")
    assert task_mismatch(frame, "frame") is None and task_mismatch(clip, "clip") is None


def test_the_next_command_finetune_prints_parses_as_a_whole_distill(tmp_path):
    from earmark.distill.run import DistillConfig
    from earmark.teachers.cli_finetune import distill_command

    config = FinetuneConfig("acmsskd_tiny", "data/my clips.tsv", "runs/beats ft", task="frame")
    command = shlex.split(distill_command(tmp_path / "runs" / "beats ft" / "teacher", config))
    assert command[:2] == ["earmark", "distill"]
    args = verb_parser("distill", importlib.import_module(VERBS["distill"][0])).parse_args(command[2:])
    distill = config_from_args(DistillConfig, args)  # refused before: OUT was missing
    assert distill.out == "runs/beats ft-student" and distill.data == "data/my clips.tsv" and distill.task == "frame" and distill.qat


def test_listen_help_imports_neither_onnxruntime_nor_numpy():
    code = ("import sys\nfrom earmark.cli import main\ntry:\n    main(['listen', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('onnxruntime', 'numpy', 'scipy', 'sounddevice') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip().splitlines()[-1] == "[]", run.stderr
