"""The `earmark` command: one verb per stage, each implemented by the stage that owns it.

A verb's module exposes ``configure(parser)`` and ``run(args) -> int``; it is imported only
when that verb runs, so `earmark listen` never imports torch. This module owns what every verb
shares: the logging set-up (`-q`, `-v`, `--log-level`), `--version`, help texts that show
defaults, and the error policy (earmark's own bad-input errors print one sentence; anything
unexpected keeps its traceback; a missing optional dependency names the extra to install).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.metadata
import importlib.util
import logging
import os
import sys
import traceback
from pathlib import Path

# verb -> (module, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "data": ("earmark.audio.cli_data", "make the demo dataset or check a manifest"),
    "complexity": ("earmark.students.cli_complexity", "parameters, MACs and bytes against the DCASE limits"),
    "convert": ("earmark.cli_convert", "convert an official teacher or TF-SepNet checkpoint into an earmark checkpoint"),
    "pretrain": ("earmark.teachers.cli_pretrain", "self-supervised teacher pretraining (ACM-SSKD, ASiT, ATST, BEATs)"),
    "finetune": ("earmark.teachers.cli_finetune", "fine-tune a teacher on a labelled manifest"),
    "predict": ("earmark.cli_predict", "write a teacher-output cache for a manifest"),
    "distill": ("earmark.distill.cli", "distil a teacher into a student, optionally with QAT"),
    "tune": ("earmark.distill.cli_tune", "tune a detector run's event thresholds again (criterion, one or per class)"),
    "export": ("earmark.export.cli_export", "export a checkpoint to ONNX or a TensorRT engine"),
    "bench": ("earmark.export.cli_bench", "latency and throughput of exported models"),
    "adapt": ("earmark.adapt.cli", "teach a deployed detector your own sounds and site from a few examples (enrolment)"),
    "eval": ("earmark.evaluation.cli", "accuracy/mAP on clips, event F1 and PSDS on soundscapes, of a checkpoint or .onnx"),
    "listen": ("earmark.runtime.cli", "live scene and event detection from a microphone, file or stdin"),
    "demo": ("earmark.demo", "teacher -> student -> INT8 ONNX -> live detection on synthetic data"),
}

# top-level module of an optional dependency -> the extra that installs it
EXTRAS: dict[str, str] = {
    **dict.fromkeys(["torch", "nncf", "torchinfo", "webdataset", "safetensors"], "train"),
    **dict.fromkeys(["sed_eval", "sed_scores_eval", "pandas", "matplotlib"], "eval"),  # the smaller extra with matplotlib
    "torchaudio": "torchaudio", "tensorrt": "tensorrt", "cuda": "tensorrt", "paho": "mqtt",
}

# Libraries that install their own handlers or print to stderr; their records go through earmark's handler instead.
CHATTY = ("nncf", "torch", "onnxruntime")
LEVELS = ("debug", "info", "warning", "error")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default (argparse's ArgumentDefaultsHelpFormatter, minus the noise)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False or default in ("", [], argparse.SUPPRESS)
                or action.option_strings == []
                or isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class OneLineParser(argparse.ArgumentParser):
    """A bad option is one line on stderr (what is wrong, where to look), not the usage block first."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message}; see `{self.prog} --help`.\n")


def _version() -> str:
    """earmark's version and those of the libraries a bug report needs."""
    def installed(name: str) -> str:
        try:
            return f"{name} {importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            return f"no {name}"

    from earmark import __version__

    deps = ", ".join(installed(name) for name in ("numpy", "onnxruntime", "onnx", "torch", "nncf"))
    return f"earmark {__version__} (python {sys.version.split()[0]}; {deps})"


def _common_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The logging options; accepted before and after the verb (after the verb they override)."""
    unset = None if defaults else argparse.SUPPRESS
    group = parser.add_argument_group("output")
    group.add_argument("-q", "--quiet", action="store_true", default=False if defaults else unset,
                       help="only warnings and errors on stderr; no progress bars")
    group.add_argument("-v", "--verbose", action="count", default=0 if defaults else unset,
                       help="more detail: -v shows the libraries' own messages (NNCF, ONNX Runtime, torch), -vv debug")
    group.add_argument("--log-level", choices=LEVELS, default=unset, help="earmark's log level (overrides -q / -v)")


class _AdoptOnImport(importlib.abc.MetaPathFinder):
    """Calls ``adopt(name)`` right after a chatty library is imported, whichever module imports it and when.

    The libraries install their own log handlers at import time (NNCF prints INFO to stdout), so they can only
    be routed to earmark's handler after their import; the verb's code imports them lazily, deep inside a run.
    """

    def __init__(self, adopt):
        self.adopt, self.busy = adopt, set()

    def find_spec(self, name, path=None, target=None):
        if name not in CHATTY or name in self.busy:
            return None
        self.busy.add(name)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.busy.discard(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenAdopt(spec.loader, lambda: self.adopt(name))
        return spec


class _ThenAdopt:
    """A loader that runs the real one, puts it back on the module, then adopts the module's loggers."""

    def __init__(self, loader, after):
        self._loader, self._after = loader, after

    def __getattr__(self, attr):
        return getattr(self._loader, attr)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        self._after()


class _Format(logging.Formatter):
    """``earmark VERB: message`` for earmark's records, ``LIBRARY: message`` for the libraries'; level named unless INFO."""

    def __init__(self, verb: str):
        super().__init__()
        self.verb = verb

    def format(self, record: logging.LogRecord) -> str:
        source = f"earmark {self.verb}" if record.name.split(".")[0] in ("earmark", "root") else record.name.split(".")[0]
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        text = f"{source}: {level}{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(verb: str, quiet: bool = False, verbose: int = 0, level: str | None = None) -> int:
    """One stderr handler for earmark and the libraries it drives; returns earmark's level.

    Default: earmark at INFO, libraries at ERROR (their INFO/WARNING chatter is hidden); ``-q``: earmark at
    WARNING and no progress bars; ``-v``: libraries at INFO; ``-vv``: everything at DEBUG.
    """
    ours = getattr(logging, level.upper()) if level else logging.WARNING if quiet else logging.DEBUG if verbose >= 2 else logging.INFO
    theirs = logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.ERROR
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format(verb))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(min(ours, theirs))
    logging.getLogger("earmark").setLevel(ours)
    logging.getLogger("py.warnings").setLevel(theirs)
    logging.captureWarnings(True)
    if quiet:
        os.environ["TQDM_DISABLE"] = "1"  # tqdm reads its defaults from TQDM_* variables

    def adopt(name: str) -> None:
        if name == "onnxruntime":  # C++ logging: 0 verbose .. 3 error
            sys.modules[name].set_default_logger_severity({logging.DEBUG: 0, logging.INFO: 1}.get(theirs, 3))
            return
        if name == "nncf":  # its progress bars draw on rich's global console: stderr like ours, none with -q
            import rich

            rich.reconfigure(stderr=True, quiet=quiet)
        for logger_name in [name, *(n for n in logging.root.manager.loggerDict if n.startswith(name + "."))]:
            logger = logging.getLogger(logger_name)
            for old in [h for h in logger.handlers if not isinstance(h, logging.FileHandler)]:
                logger.removeHandler(old)
            logger.propagate = True
        logging.getLogger(name).setLevel(theirs)

    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _AdoptOnImport)]
    sys.meta_path.insert(0, _AdoptOnImport(adopt))
    for name in CHATTY:
        if name in sys.modules:
            adopt(name)
    return ours


def _missing_extra(err: ModuleNotFoundError) -> str | None:
    """One sentence naming the extra that installs a missing optional dependency, or None if it is not one."""
    top = (err.name or "").split(".")[0]
    if top not in EXTRAS:
        return None
    extra = EXTRAS[top]
    return f"this needs {top}, which the edge install leaves out; install it with: pip install 'earmark[{extra}]'"


def _is_user_error(err: BaseException) -> bool:
    """Bad input reported by earmark itself: one of the user-error types, raised in earmark's own code.

    The same types raised inside torch, numpy, NNCF, ... are unexpected and keep their traceback.
    """
    if not isinstance(err, (ValueError, OSError, RuntimeError)) or not getattr(err, "earmark_user_error", True):
        return False
    if type(err).__module__.startswith("earmark."):  # earmark's own error types, also re-raised by a DataLoader worker
        return True
    frames = traceback.extract_tb(err.__traceback__)
    package = str(Path(__file__).parent)
    return bool(frames) and frames[-1].filename.startswith(package)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; verb options are added only for the verb being run."""
    parser = OneLineParser(prog="earmark", formatter_class=HelpFormatter,
                                     description="Distil big audio teachers into tiny students that listen live on the edge.")
    parser.add_argument("--version", action="version", version=_version())
    _common_options(parser, defaults=True)
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, (_, help_text) in VERBS.items():
        sub.add_parser(verb, help=help_text, add_help=False)
    return parser


def verb_parser(verb: str, module) -> argparse.ArgumentParser:
    """The parser of one verb: its own options plus the logging options."""
    parser = OneLineParser(prog=f"earmark {verb}", description=VERBS[verb][1], formatter_class=HelpFormatter)
    module.configure(parser)
    _common_options(parser, defaults=False)
    return parser


def _split(argv: list[str]) -> tuple[list[str], str | None, list[str]]:
    """(options before the verb, the verb, the verb's arguments)."""
    for i, token in enumerate(argv):
        if not token.startswith("-"):
            return argv[:i], token, argv[i + 1:]
    return argv, None, []


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    before, verb, rest = _split(argv)
    if verb not in VERBS:
        parser.parse_args(argv if verb or before else ["--help"])  # --version, --help, or an unknown verb
        return 2
    common = parser.parse_args(before)
    options = argparse.ArgumentParser(add_help=False)
    _common_options(options, defaults=False)
    after, rest = options.parse_known_args(rest)  # also after a sub-action (`data check M -q`)
    quiet = getattr(after, "quiet", common.quiet)
    verbose, level = getattr(after, "verbose", common.verbose), getattr(after, "log_level", common.log_level)
    try:
        module = importlib.import_module(VERBS[verb][0])
        args = verb_parser(verb, module).parse_args(rest)
        args.quiet = configure_logging(verb, quiet, verbose, level) > logging.INFO
        return int(module.run(args) or 0)
    except ModuleNotFoundError as err:
        hint = _missing_extra(err)
        if hint is None:
            raise
        print(f"earmark {verb}: {hint}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (`earmark ... | head`): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (ValueError, OSError, RuntimeError) as err:
        if not _is_user_error(err):
            raise
        print(f"earmark {verb}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
