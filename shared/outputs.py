"""The output folder's rules: never overwrite a previous run unless asked, and write atomically.

Checkpoints and final models are written into a temporary sibling folder and renamed when complete, so a run
killed mid-save leaves the previous checkpoint loadable, never a half-written model that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

from filelock import FileLock, Timeout

from mlm_toolkit.config import DataConfig, RunConfig, TrainConfig
from mlm_toolkit.errors import RunError, UsageError

log = logging.getLogger(__name__)

# Checkpoints are named as the Trainer names them, so `transformers.trainer_utils.get_last_checkpoint`
# finds the newest; each is a model folder `from_pretrained` loads, beside the training state.
CHECKPOINT = re.compile(r"checkpoint-(\d+)")
RESULTS = "all_results.json"  # written last: a folder holding it is a finished run


def check_output_dir(config: TrainConfig) -> Path:
    """Refuse a non-empty --output-dir unless resuming or told to overwrite (reads only: every process calls it)."""
    out = Path(config.output_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"{str(out)!r} is a file, not a folder", "--output-dir")
    if out.is_dir() and any(out.iterdir()) and not (config.overwrite_output_dir or config.resume):
        advice = "pass --overwrite-output-dir to replace it, --resume auto to continue it, or choose another folder"
        raise UsageError(f"{str(out)!r} already holds a run; {advice}", "--output-dir")
    if out.is_dir() and config.overwrite_output_dir and not config.resume and (foreign := foreign_files(out)):
        few = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        advice = "--overwrite-output-dir replaces only a previous run's files: move them or choose another folder"
        raise UsageError(f"{str(out)!r} holds files this tool did not write ({few}); {advice}", "--output-dir")
    return out


def recover_interrupted_overwrite(out: Path) -> None:
    """A killed --overwrite-output-dir run left the previous run beside `out`: finish the replacement if the new
    run saved a checkpoint or its results, else put the previous run back, and say which."""
    out = out.expanduser()
    out = out.resolve() if out.is_symlink() else out
    if _locked(out):
        return  # the overwrite is still running; its lock refuses this run
    for aside in out.parent.glob(f".{out.name}.replaced-*"):  # moved aside by the overwrite of process PID
        pid = aside.name.rsplit("-", 1)[-1]
        if not (aside.is_dir() and pid.isdigit()):
            continue
        (aside / LOCK).unlink(missing_ok=True)  # the previous run as it was
        if out.is_dir() and ((out / RESULTS).is_file() or complete_checkpoints(out)):
            shutil.rmtree(aside)
            stopped = f"the overwrite by PID {pid} was stopped after it saved a checkpoint"
            log.warning(f"{out}: {stopped}; finished it by removing the previous run it had moved to {aside.name}")
            continue
        if out.is_dir():
            if foreign := foreign_files(out):
                previous = f"the previous run of {str(out)!r} is in {str(aside)!r} (an overwrite was stopped)"
                holds = f"{str(out)!r} now holds {', '.join(foreign[:3])}"
                raise UsageError(f"{previous}, but {holds}: move one of them", "--output-dir")
            shutil.rmtree(out)
        os.replace(aside, out)
        stopped = f"the overwrite by PID {pid} (stopped before it saved anything)"
        log.warning(f"{out}: restored the previous run, which {stopped} had moved to {aside.name}")


LOCK = ".lock"

# What a run writes at the top of --output-dir (model folder, report, Keras backups, trackers' logs, and the
# checkpoints): --overwrite-output-dir replaces these and nothing else.
RUN_FILES = {
    *"README.md all_results.json train_results.json eval_results.json loss_curve.png run_config.yaml".split(),
    *"run_config.json config.json generation_config.json model.safetensors model.safetensors.index.json".split(),
    *"pytorch_model.bin tf_model.h5 tokenizer.json tokenizer_config.json special_tokens_map.json".split(),
    *"added_tokens.json chat_template.jinja vocab.txt vocab.json merges.txt spiece.model tokenizer.model".split(),
    *"sentencepiece.bpe.model runs backup backup-previous hub model manifest.json".split(),
    LOCK,
}


def foreign_files(out: Path) -> list[str]:
    """The entries of `out` a run of this tool did not write (its staging folders start with a dot)."""
    return sorted(
        p.name + ("/" if p.is_dir() else "")
        for p in out.iterdir()
        if p.name not in RUN_FILES
        and not CHECKPOINT.fullmatch(p.name)
        and not (p.name.startswith(".tmp-") or p.name.endswith(".tmp"))
    )


def cache_root(config: DataConfig) -> Path:
    return Path(config.cache_dir or os.environ.get("MLM_CACHE_DIR") or Path.home() / ".cache" / "mlm-toolkit")


def protected_sources(run: RunConfig, model_location: str | None) -> list[tuple[str, Path]]:
    """(flag, folder) of everything a run reads and must never write over: model, data, caches."""
    from huggingface_hub import constants

    sources = [("--cache-dir", cache_root(run.data)), ("the Hugging Face cache", Path(constants.HF_HUB_CACHE))]
    for flag, name in (("--model", model_location), ("--dataset", run.data.dataset)):
        if name and Path(name).expanduser().exists():
            sources.append((flag, Path(name).expanduser()))
    return sources


def refuse_overlap(out: Path, sources: list[tuple[str, Path]]) -> None:
    """An output folder that is, holds or lies in a source could be emptied by --overwrite-output-dir."""
    target = out.expanduser().resolve()
    for flag, source in sources:
        source = source.resolve()
        where = "is" if target == source else "lies inside" if source in target.parents else None
        where = where or ("contains" if target in source.parents else None)
        if where:
            message = f"{str(out)!r} {where} the folder of {flag} ({source}); choose another folder"
            raise UsageError(message, "--output-dir")


def busy(out: Path) -> UsageError:
    try:
        holder = f" (PID {int((out / LOCK).read_text())})"
    except (OSError, ValueError):
        holder = ""
    message = f"another run{holder} is writing to {str(out)!r}; wait for it to end or choose another folder"
    return UsageError(message, "--output-dir")


def _take_lock(out: Path) -> FileLock:
    """`out`'s lock, held until released or this process ends (a killed run leaves no stale lock)."""
    lock = FileLock(out / LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise busy(out) from None
    (out / LOCK).write_text(f"{os.getpid()}\n")  # for the message another run prints
    return lock


def _locked(out: Path) -> bool:
    """Whether a live run holds `out`'s lock."""
    try:
        if (out / LOCK).is_file():
            _take_lock(out).release()
    except UsageError:
        return True
    return False


@contextlib.contextmanager
def claimed_output_dir(
    run: RunConfig, model_location: str | None, is_main: bool = True, barrier: Callable[[], None] = lambda: None
) -> Iterator[Path]:
    """The run's --output-dir, checked by every process, then created and locked by the main one (`is_main`).

    With --overwrite-output-dir the previous contents are moved aside, deleted only once the new run has
    written its final model or a complete checkpoint, and put back if it fails before.
    """
    out = check_output_dir(run.train)
    refuse_overlap(out, protected_sources(run, model_location))
    barrier()
    if not is_main:
        yield out
        return
    if out.is_dir() and _locked(out):
        raise busy(out)
    aside, created = None, not out.exists()
    real = out.resolve() if out.is_symlink() else out  # a link stays a link: the folder it names is replaced
    if out.is_dir() and any(out.iterdir()) and run.train.overwrite_output_dir and not run.train.resume:
        aside = real.with_name(f".{real.name}.replaced-{os.getpid()}")
        os.replace(real, aside)
        real.mkdir()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out):  # unwritable or full disk: say so before training
            pass
    except OSError as error:
        if aside:
            os.replace(aside, real)
        raise RunError(f"--output-dir: cannot write to {str(out)!r}: {error.strerror or error}") from error
    lock = _take_lock(out)
    try:
        yield out
    except BaseException:
        if aside and not complete_checkpoints(out):  # nothing of the new run worth keeping: undo
            shutil.rmtree(real, ignore_errors=True)
            os.replace(aside, real)
            aside = None
        raise
    finally:
        if aside:
            shutil.rmtree(aside, ignore_errors=True)
        (out / LOCK).unlink(missing_ok=True)
        lock.release()
        if created and out.is_dir() and not any(out.iterdir()):  # a run that failed before writing
            out.rmdir()


def staging_dir(final: Path) -> Path:
    """A fresh temporary sibling of `final`, named predictably so every process of a run agrees on it."""
    partial = final.with_name(f".tmp-{final.name}")
    shutil.rmtree(partial, ignore_errors=True)  # left by a run killed mid-save
    partial.parent.mkdir(parents=True, exist_ok=True)
    return partial


def as_umask_allows(folder: Path) -> None:
    """The files of `folder` as the umask allows: safetensors writes through a private temporary file, 0600,
    which another user could not load."""
    umask = os.umask(0)
    os.umask(umask)
    for path in folder.rglob("*"):
        if path.is_file() and path.stat().st_mode & 0o777 == 0o600:
            path.chmod(0o666 & ~umask)


def commit_dir(partial: Path, final: Path) -> None:
    """Make a completely written `partial` folder visible as `final` with one rename, its files as the umask
    allows."""
    as_umask_allows(partial)
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder; it becomes `final` only if the block finishes without error."""
    partial = staging_dir(final)
    try:
        yield partial
        commit_dir(partial, final)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def checkpoint_dir(out: Path, step: int) -> Path:
    return out / f"checkpoint-{step}"


def complete_checkpoints(out: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first (a checkpoint being written is a `.tmp-` folder)."""
    if not out.is_dir():
        return []
    found = [p for p in out.iterdir() if p.is_dir() and CHECKPOINT.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(CHECKPOINT.fullmatch(p.name)[1]))


def prune_checkpoints(out: Path, keep: int | None) -> None:
    """Delete all but the newest `keep` complete checkpoints (--save-total-limit)."""
    if keep:
        for old in complete_checkpoints(out)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


MANIFEST = "manifest.json"


def write_text_atomically(path: Path, text: str) -> None:
    """Write a new file and rename it over `path`: no reader sees half of it; a hard link keeps the old one."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # several processes may write at once
    partial.write_text(text)
    os.replace(partial, path)


def snapshot_dir(folder: Path, snapshot: Path) -> None:
    """Make `snapshot` hold `folder`'s files as they are now, by hard links (copies across file systems): what
    `folder` writes next, by new files and renames, leaves `snapshot` as it was."""
    with atomic_dir(snapshot) as partial:
        for path in sorted(folder.rglob("*")):
            target = partial / path.relative_to(folder)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)


def write_manifest(folder: Path, paths: Iterable[Path] | None = None) -> None:
    """Size and SHA-256 of every file of a finished checkpoint (or of `paths`), written last, so a damaged one
    is recognised without loading it."""
    paths = sorted(folder.rglob("*") if paths is None else paths)
    files = {
        p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_of(p)}
        for p in paths
        if p.is_file() and p.name != MANIFEST
    }
    write_text_atomically(folder / MANIFEST, json.dumps(files, indent=1))


def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def checkpoint_damage(folder: Path) -> str | None:
    """Why the checkpoint in `folder` cannot be trusted, or None when it is whole."""
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            files = json.loads(manifest.read_text())
        except ValueError:
            return f"{MANIFEST} is not valid JSON"
        for name, expected in files.items():
            path = folder / name
            if not path.is_file():
                return f"{name} is missing"
            if path.stat().st_size != expected["bytes"]:
                return f"{name} has {path.stat().st_size} bytes, {expected['bytes']} were written"
            if sha256_of(path) != expected["sha256"]:
                return f"{name} differs from what was written"
        return None
    for path in folder.glob("*.json"):  # an older checkpoint without a manifest: its state must parse
        try:
            json.loads(path.read_text())
        except ValueError:
            return f"{path.name} is not valid JSON"
    return None


def find_resume_checkpoint(out: Path, resume: str) -> Path:
    """The checkpoint `--resume` names: 'auto' is the newest whole one in --output-dir (skipped ones named)."""
    if resume != "auto":
        path = Path(resume).expanduser()
        if not path.is_dir():
            raise UsageError(f"no checkpoint folder at {resume!r}", "--resume")
        damage = checkpoint_damage(path)
        if damage:
            raise UsageError(f"checkpoint {str(path)!r} is damaged: {damage}", "--resume")
        return path
    found = complete_checkpoints(out)
    if not found:
        raise UsageError(f"no complete checkpoint (checkpoint-N) in {str(out)!r} to resume from", "--resume")
    damaged = []
    for path in reversed(found):
        damage = checkpoint_damage(path)
        if damage is None:
            if damaged:
                log.warning("resuming from %s: the newer %s", path.name, "; ".join(damaged))
            return path
        damaged.append(f"{path.name} is damaged ({damage})")
    raise UsageError(f"no checkpoint in {str(out)!r} loads: {'; '.join(damaged)}", "--resume")


def require_free_space(folder: Path, needed: int, what: str) -> None:
    """Refuse to start writing `what` (about `needed` bytes) into `folder` when the disk has not room for it."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < needed:
        sizes = f"about {needed / 2**20:,.1f} MiB in {folder}, {free / 2**20:,.1f} MiB are free there"
        raise RunError(f"--output-dir: {what} needs {sizes}: free some space and --resume auto")


def save_model_atomically(out: Path, save: Callable[[Path], None], needed: int) -> None:
    """Write the final model (about `needed` bytes) with `save(folder)` into staging, then move its files to
    the top of `out`, where pipelines look."""
    require_free_space(out, needed, "the final model")
    staged = out / "model"
    with atomic_dir(staged) as partial:
        save(partial)
        write_manifest(partial)  # as a checkpoint's: whoever loads the model can tell it is whole
    for item in staged.iterdir():
        item.replace(out / item.name)
    staged.rmdir()
