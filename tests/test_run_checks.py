"""A run is checked whole before anything is written, one writer per run directory, and the
errors around a run (corrupt files, a full disk, secrets) are one line, never a traceback."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cai_bootstrap.cli import app
from cai_bootstrap.config import PACKAGE_DIR, RunSettings
from cai_bootstrap.jsonl import atomic_write_json, read_json

runner = CliRunner()


def _run(out: Path, *extra: str):
    return runner.invoke(app, ["run", "--preset", "tiny", "--out", str(out), "--no-progress", *extra])


def _refused(res, out: Path, *words: str) -> None:
    """Exit 1 with a one-line error naming ``words``; nothing written into ``out``."""
    text = " ".join(res.output.split())
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    for word in words:
        assert word in text, text
    assert not (out / "manifest.json").exists() and not out.exists()


def _curriculum(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load((PACKAGE_DIR / "curricula" / "skills.yaml").read_text(encoding="utf-8"))
    edit(data)
    path = tmp_path / "cur.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# ------------------------------------------------------------------ validation before the manifest


def test_stage_6_option_typo_is_refused_before_stage_1_starts(tmp_path):
    out = tmp_path / "run"
    t0 = time.monotonic()
    res = _run(out, "--set", "stage_overrides={stage-6: {options: {contrast_pairz: 4}}}")
    _refused(res, out, "stage-6", "contrast_pairz")
    assert time.monotonic() - t0 < 30  # refused at once, not after five trained stages


def test_unknown_role_key_is_refused(tmp_path):
    def typo(data):
        data["stages"][1]["roles"] = {"prompt_writer": "stage-1", "answrer": "stage-1"}

    out = tmp_path / "run"
    _refused(_run(out, "--curriculum", str(_curriculum(tmp_path, typo))), out, "stage-2", "answrer", "answerer")


def test_unknown_family_is_refused(tmp_path):
    def typo(data):
        data["stages"][4]["families"] = ["make_helpful", "fix_erors"]

    out = tmp_path / "run"
    _refused(_run(out, "--curriculum", str(_curriculum(tmp_path, typo))), out, "stage-5", "fix_erors")


def test_overrides_for_a_stage_that_does_not_exist_are_refused(tmp_path):
    out = tmp_path / "run"
    _refused(_run(out, "--set", "stage_overrides={stage-9: {examples: 3}}"), out, "stage-9", "no such stage")


def test_unknown_model_writes_no_manifest(tmp_path):
    out = tmp_path / "run"
    _refused(_run(out, "--model", "no-such-model"), out, "no-such-model")
    # the right model then starts a new run instead of "resuming" the wrong one
    from cai_bootstrap.pipeline.setup import create_run, load_run

    create_run(RunSettings(model="tiny", preset="tiny", stages=["stage-1"]), out)
    assert load_run(out)[1].model == "tiny"


def test_bad_constitution_is_refused_before_any_stage(tmp_path):
    out = tmp_path / "run"
    _refused(_run(out, "--set", "constitution=no-such-constitution"), out, "no-such-constitution")
    latin1 = tmp_path / "c.yaml"
    latin1.write_bytes("name: c\nprinciples:\n  - name: caf\xe9\n".encode("latin-1"))
    _refused(_run(out, "--set", f"constitution={latin1}"), out, "not UTF-8")


def test_constitution_is_only_loaded_for_constitutional_stages(tmp_path):
    from cai_bootstrap.pipeline.setup import check_run

    check_run(RunSettings(model="tiny", preset="tiny", stages=["stage-1"], constitution="no-such"))


def test_stages_must_be_a_prefix(tmp_path):
    out = tmp_path / "run"
    _refused(_run(out, "--stages", "stage-1,stage-3"), out, "prefix", "stage-1,stage-2")


# ------------------------------------------------------------------ one writer per run directory


def _hold_lock(run_dir: Path) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import sys, time
        from cai_bootstrap.runs.lock import run_lock
        with run_lock({str(run_dir)!r}):
            print("held", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_on_a_run_directory_is_refused_with_the_holders_pid(tmp_path):
    from cai_bootstrap.pipeline.runner import execute, execute_controls
    from cai_bootstrap.pipeline.setup import create_run
    from cai_bootstrap.runs.lock import RunLocked

    out = create_run(RunSettings(model="tiny", preset="tiny", stages=["stage-1"]), tmp_path / "run")
    holder = _hold_lock(out)
    try:
        for args in (["run", "--preset", "tiny", "--stages", "stage-1", "--out", str(out), "--no-progress"],
                     ["resume", str(out), "--no-progress"], ["ablate", str(out), "--no-progress"]):
            res = runner.invoke(app, args)
            assert res.exit_code == 1, res.output
            assert f"PID {holder.pid}" in " ".join(res.output.split()), res.output
        with pytest.raises(RunLocked, match=f"PID {holder.pid}"):
            execute(out)
        with pytest.raises(RunLocked):
            execute_controls(out)
        assert not (out / "stage-1").exists()  # the refused processes wrote nothing
    finally:
        holder.kill()  # kill -9: the kernel drops the lock with its holder
        holder.wait()
    from cai_bootstrap.runs.lock import run_lock

    with run_lock(out), run_lock(out):  # free again, and reentrant within a process
        pass


def test_two_concurrent_runs_on_one_directory(tmp_path):
    """Two `run` processes on one --out: one runs, the other is refused at once (exit 1).

    The first runs the whole tiny curriculum (a minute or more), so it still holds the lock when
    the second starts: with stage 1 alone, a fast machine finished it first and the second resumed.
    """
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    args = [sys.executable, "-m", "cai_bootstrap.cli", "run", "--preset", "tiny", "--out", str(out), "--no-progress"]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (out / ".lock").exists() or not (out / "manifest.json").exists():
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.2)
        second = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
        assert first.poll() is None, "the first run ended before the second started: the test proves nothing"
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"PID {first.pid}" in " ".join((second.stdout + second.stderr).split())
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()


# ------------------------------------------------------------------ the smaller items


def test_manifest_without_settings_is_one_line(tmp_path):
    (tmp_path / "run").mkdir()
    atomic_write_json(tmp_path / "run" / "manifest.json", {"run_id": "x", "curriculum": {}, "stages": []})
    res = runner.invoke(app, ["status", str(tmp_path / "run")])
    assert res.exit_code == 1 and "missing settings" in res.output and "'settings'" not in res.output


def test_api_key_is_not_stored_in_the_manifest(tmp_path):
    from cai_bootstrap.pipeline.setup import create_run

    settings = RunSettings(model="tiny", preset="tiny", stages=["stage-1"],
                           engine={"backend": "openai", "base_url": "http://127.0.0.1:9", "api_key": "sk-secret"})
    out = create_run(settings, tmp_path / "run")
    assert "sk-secret" not in (out / "manifest.json").read_text(encoding="utf-8")
    assert read_json(out / "manifest.json")["settings"]["engine"]["api_key"] is None


def _finished_stage_run(tmp_path: Path) -> Path:
    from cai_bootstrap.pipeline.setup import create_run

    out = create_run(RunSettings(model="tiny", preset="tiny", stages=["stage-1"]), tmp_path / "run")
    (out / "stage-1").mkdir()
    atomic_write_json(out / "stage-1" / "state.json", {"state": "passed", "attempt": 0})
    return out


def test_corrupt_metrics_after_a_run_is_one_line_or_a_warning(tmp_path):
    out = _finished_stage_run(tmp_path)
    (out / "stage-1" / "metrics.json").write_text("{", encoding="utf-8")
    res = runner.invoke(app, ["resume", str(out), "--no-progress"])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    text = "".join(res.output.split())
    assert "Traceback" not in text and "unreadable" in text and "metrics.json" in text, res.output


def test_unreadable_state_does_not_say_the_run_stopped_there(tmp_path):
    from cai_bootstrap.report import load_run as load_report

    out = _finished_stage_run(tmp_path)
    atomic_write_json(out / "stage-1" / "metrics.json", {"passed": False, "value": 0.1})
    (out / "stage-1" / "state.json").write_text("{not json", encoding="utf-8")
    run = load_report(out)
    assert run.stages[0].state.startswith("unknown")
    assert not any("stopped here" in w for w in run.all_warnings)
    res = runner.invoke(app, ["status", str(out)])
    assert res.exit_code == 0 and "unreadable" in res.output


def test_full_disk_is_named_plainly():
    from safetensors import SafetensorError

    from cai_bootstrap.cli.common import disk_full

    exc = SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                          'message: "No space left on device" })')
    assert "disk is full" in disk_full(exc) and "resume" in disk_full(exc)
    assert "disk is full" in disk_full(OSError(28, "No space left on device"))
    assert disk_full(ValueError("other")) is None


# ------------------------------------------------------------------ `generate`: user input is never silently dropped


@pytest.mark.parametrize("content,words", [
    (None, "no such"),
    ("", "no records"),
    ('{"id": 1, "prompt": "a"}\n{"id": 2, "prompt": ', "invalid JSONL"),  # torn last line: an error, not dropped
])
def test_generate_refuses_missing_empty_or_torn_input(tmp_path, content, words):
    src = tmp_path / "in.jsonl"
    if content is not None:
        src.write_text(content, encoding="utf-8")
    res = runner.invoke(app, ["generate", "-m", "tiny", "-i", str(src), "-o", str(tmp_path / "out.jsonl")])
    assert res.exit_code == 1 and words in " ".join(res.output.split()), res.output
    assert not (tmp_path / "out.jsonl").exists()


def test_generate_refuses_a_directory_and_bad_numbers(tmp_path):
    good = tmp_path / "in.jsonl"
    good.write_text('{"id": 1, "prompt": "a"}\n', encoding="utf-8")
    res = runner.invoke(app, ["generate", "-m", "tiny", "-i", str(tmp_path), "-o", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 1 and "directory" in res.output
    for flag, value in (("--max-new-tokens", "0"), ("--temperature", "-1")):
        res = runner.invoke(app, ["generate", "-m", "tiny", "-i", str(good), "-o", str(tmp_path / "o.jsonl"), flag, value])
        assert res.exit_code == 2 and res.exception is None or isinstance(res.exception, SystemExit), res.output
        assert flag in res.output and not (tmp_path / "o.jsonl").exists()
