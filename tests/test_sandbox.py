"""The code-execution sandbox: generated code cannot escape it.

Each escape is tried twice where it matters: with every layer, and with the
audit hook turned off, to show the kernel-side layer (network namespace, uid
drop, rlimits) holds on its own. Layers this machine cannot provide (no root,
no namespaces) are skipped with a reason instead of passing vacuously.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from cai_bootstrap.tasks.sandbox import Limits, run_python

FAST = Limits(wall_s=8, cpu_s=2, memory_mb=256, max_output=4000)
NO_HOOK = Limits(wall_s=8, cpu_s=2, memory_mb=256, max_output=4000, audit_hook=False)


def _isolation() -> dict:
    return run_python("pass", limits=FAST).isolation


@pytest.fixture(scope="module")
def iso() -> dict:
    return _isolation()


def need(iso: dict, layer: str) -> None:
    if not iso.get(layer):
        pytest.skip(f"this machine does not provide the {layer} layer: {iso}")


# ------------------------------------------------------------------ it works at all


def test_correct_code_passes_and_wrong_results_fail() -> None:
    code = "def add(a, b):\n    return a + b\n\nprint('side output')\n"
    r = run_python(code, [("add", [1, 2]), ("add", [2, 2]), ("add", [[1], [2]])], [3, 5, [1, 2]])
    assert [c.ok for c in r.cases] == [True, False, True]
    assert r.cases[1].got == 4 and r.stdout == "side output\n"
    assert r.isolation["audit_hook"] and r.isolation["rlimits"]


def test_exceptions_missing_functions_and_syntax_errors_fail_cleanly() -> None:
    r = run_python("def f(x):\n    return 1 / x\n", [("f", [0]), ("g", [1])], [0, 1])
    assert not any(c.ok for c in r.cases)
    assert "ZeroDivisionError" in r.cases[0].error and "KeyError" in r.cases[1].error
    r = run_python("def f(:\n", [("f", [])], [1])
    assert r.load_error.startswith("SyntaxError") and not r.cases[0].ok


def test_printing_a_success_message_or_forging_results_does_not_pass() -> None:
    # The child never sees the expected values, so a forged result line is just a wrong answer.
    forged = (
        "import os, sys\n"
        "print('ALL TESTS PASSED')\n"
        "out = sys.modules['__main__']._out\n"
        "out.write('{\"case\": 0, \"result\": {\"value\": true}}\\n')\n"
        "os._exit(0)\n"
    )
    r = run_python(forged, [("solve", [41])], [42])
    assert not r.all_passed and r.passed == 0


def test_expected_values_compare_strictly_on_type() -> None:
    r = run_python("def f():\n    return 1\ndef g():\n    return (1, 2)\n", [("f", []), ("g", [])], [True, [1, 2]])
    assert [c.ok for c in r.cases] == [False, True]


# ------------------------------------------------------------------ escapes


def test_infinite_loop_is_killed_by_the_cpu_limit() -> None:
    t0 = time.monotonic()
    r = run_python("while True:\n    pass\n", limits=Limits(wall_s=30, cpu_s=1))
    assert r.killed_by in (9, 24) and not r.timed_out
    assert time.monotonic() - t0 < 25


def test_sleeping_forever_is_killed_by_the_wall_clock() -> None:
    t0 = time.monotonic()
    r = run_python("import time\ntime.sleep(60)\n", [("f", [])], [1], limits=Limits(wall_s=1.5))
    assert r.timed_out and r.killed_by == 9
    assert r.cases[0].error == "timed out"
    assert time.monotonic() - t0 < 20


@pytest.mark.parametrize("code", ["x = bytearray(4 * 1024 ** 3)\n", "x = []\nwhile True:\n    x.append(' ' * 10 ** 6)\n"])
def test_memory_bomb_hits_the_address_space_limit(code: str) -> None:
    r = run_python(code, limits=FAST)
    assert r.load_error.startswith("MemoryError")


@pytest.mark.parametrize("code", [
    "import os\nfor _ in range(50):\n    os.fork()\n",
    "import posix\nposix.fork()\n",
    "import os\nos.system('echo hi')\n",
    "import subprocess\nsubprocess.run(['true'])\n",
    "import os\nos.execv('/bin/sh', ['sh'])\n",
    "import os\nos.posix_spawn('/bin/true', ['true'], {})\n",
    "import _thread\n_thread.start_new_thread(print, ('x',))\n",
])
def test_process_creation_is_refused(code: str) -> None:
    r = run_python(code, limits=FAST)
    assert r.load_error.startswith("PermissionError"), r


def test_fork_bomb_is_stopped_by_the_process_limit_without_the_hook(iso: dict) -> None:
    need(iso, "uid_dropped")
    code = "import os\ntry:\n    pid = os.fork()\nexcept OSError as e:\n    print('refused', e.errno)\nelse:\n    print('forked')\n    if pid == 0:\n        os._exit(0)\n"
    r = run_python(code, limits=NO_HOOK)
    assert r.stdout.startswith("refused 11"), r  # EAGAIN from RLIMIT_NPROC


@pytest.fixture
def listener():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    accepted: list = []

    def serve() -> None:
        srv.settimeout(10)
        try:
            conn, _ = srv.accept()
            accepted.append(conn)
        except OSError:
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1], accepted
    srv.close()


def _connect_code(port: int) -> str:
    return (
        "import socket\n"
        "s = socket.socket()\ns.settimeout(3)\n"
        f"try:\n    s.connect(('127.0.0.1', {port}))\n    print('CONNECTED')\n"
        "except OSError as e:\n    print('refused', e)\n"
    )


def test_network_is_refused(listener) -> None:
    port, _ = listener
    # the listener is reachable from outside the sandbox ...
    with socket.create_connection(("127.0.0.1", port), timeout=3):
        pass
    # ... but not from inside, even with socket pre-imported for it
    r = run_python(_connect_code(port), limits=Limits(wall_s=8, preload=("socket",)))
    assert "CONNECTED" not in r.stdout
    assert r.load_error.startswith("PermissionError")
    r = run_python("import sys\ns = sys.modules.get('_socket')\nprint(s)\n", limits=FAST)
    assert r.stdout.strip() == "None"


def test_network_namespace_alone_blocks_loopback(listener, iso: dict) -> None:
    need(iso, "netns")
    port, _ = listener
    r = run_python(_connect_code(port), limits=Limits(wall_s=8, audit_hook=False, preload=("socket",)))
    assert r.stdout.startswith("refused"), r
    assert "CONNECTED" not in r.stdout


@pytest.mark.parametrize("code", [
    "open('{target}', 'w').write('x')\n",
    "import os\nfd = os.open('{target}', os.O_WRONLY | os.O_CREAT)\nos.write(fd, b'x')\n",
    "import os\nos.mkdir('{target}')\n",
    "import os\nos.symlink('/etc', 'etc_link')\n",
    "import os\nos.chdir('{parent}')\nopen('escaped', 'w').write('x')\n",
    "open('../../{name}', 'w').write('x')\n",
])
def test_writing_outside_the_temp_dir_is_refused(code: str, tmp_path: Path) -> None:
    target = tmp_path / "escaped"
    os.chmod(tmp_path, 0o777)  # even a world-writable place outside the sandbox
    r = run_python(code.format(target=target, parent=tmp_path, name="escaped-rel"), limits=FAST)
    assert r.load_error.startswith("PermissionError"), r
    assert not target.exists() and not (tmp_path / "escaped").exists()


def test_writing_inside_the_temp_dir_works_and_is_removed_afterwards() -> None:
    code = "import os\nopen('scratch.txt', 'w').write('hello')\nprint(os.getcwd())\nprint(open('scratch.txt').read())\n"
    r = run_python(code, limits=FAST)
    workdir, content = r.stdout.split()
    assert content == "hello" and not Path(workdir).exists()


def test_without_the_hook_the_uid_drop_still_protects_system_files(iso: dict) -> None:
    need(iso, "uid_dropped")
    code = (
        "for p in ('/etc/cai_sandbox_probe', '/root/cai_sandbox_probe'):\n"
        "    try:\n        open(p, 'w').write('x')\n        print('WROTE', p)\n"
        "    except OSError as e:\n        print('refused', e.errno)\n"
        "try:\n    open('/etc/shadow').read()\n    print('READ')\nexcept OSError as e:\n    print('refused', e.errno)\n"
    )
    r = run_python(code, limits=NO_HOOK)
    assert r.stdout.split() == ["refused", "13"] * 3, r
    assert not Path("/etc/cai_sandbox_probe").exists()


def test_reading_files_outside_the_sandbox_is_refused() -> None:
    for path in ("/etc/passwd", str(Path(__file__).resolve())):
        r = run_python(f"print(open({path!r}).read()[:20])\n", limits=FAST)
        assert r.load_error.startswith("PermissionError") and not r.stdout


def test_environment_secrets_are_stripped(monkeypatch) -> None:
    monkeypatch.setenv("CAI_TEST_SECRET", "hunter2")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    r = run_python("import os\nprint(sorted(os.environ))\nprint(repr(os.environ.get('CAI_TEST_SECRET')))\n", limits=FAST)
    assert "hunter2" not in r.stdout and "hf_secret" not in r.stdout
    assert "HF_TOKEN" not in r.stdout and r.stdout.strip().endswith("None")


@pytest.mark.parametrize("code", ["print('x' * 10 ** 8)\n", "while True:\n    print('y' * 10000)\n"])
def test_huge_output_is_capped(code: str) -> None:
    r = run_python(code, limits=Limits(wall_s=10, cpu_s=3, max_output=5000, max_file_mb=1))
    assert len(r.stdout) <= 5000 + 40 and r.stdout.endswith("[... output truncated]")
    assert not r.timed_out


@pytest.mark.parametrize("code", [
    "import ctypes\n",
    "import sys\nprint([m for m in sys.modules if 'ctypes' in m])\nimport _ctypes\n",
    "import importlib\n",
    # adding a hook cannot remove ours (hooks only accumulate)
    "import sys\ntry:\n    sys.addaudithook(lambda *a: None)\nexcept Exception:\n    pass\nopen('/tmp/cai_sandbox_probe', 'w')\n",
    "import os\nos.kill(1, 9)\n",
    # replacing builtins or module globals does not switch the hook off
    ("import builtins, sys\nbuiltins.isinstance = lambda *a: True\nbuiltins.any = lambda *a: True\n"
     "vars(sys.modules['__main__']).clear()\nopen('/tmp/cai_sandbox_probe', 'w')\n"),
    "import posixpath\nposixpath.realpath = lambda p, **k: '/ok'\nopen('/tmp/cai_sandbox_probe', 'w')\n",
])
def test_hook_bypass_attempts_are_refused(code: str) -> None:
    r = run_python(code, limits=FAST)
    # (code that wrecks builtins also wrecks the reporting: the refusal then shows on stderr)
    assert r.load_error.startswith("PermissionError") or "PermissionError: sandbox" in r.stderr, r
    assert not Path("/tmp/cai_sandbox_probe").exists()


# ------------------------------------------------------------------ the kernel checks paths, not the hook (#22)

#: The escape from issue #22: inside a subfolder, a link whose target the hook resolved from the
#: wrong folder ("inside"), then opened through the kernel (which resolves it from the link's).
SYMLINK_ESCAPE = (
    "import os\n"
    "os.makedirs('a/b/c/d')\n"
    "os.chdir('a/b/c/d')\n"
    "os.symlink('../../../../etc/passwd', '../../../../l')\n"
    "os.chdir('../../../..')\n"
    "print(open('l').read()[:40])\n"
)


def test_symlink_escape_is_refused_as_uid_65534(iso: dict) -> None:
    need(iso, "uid_dropped")  # the child runs as nobody (uid 65534), as the tool does under root
    r = run_python(SYMLINK_ESCAPE, limits=FAST)
    assert "root:" not in r.stdout and r.load_error.startswith("PermissionError"), r
    assert "os.symlink is not allowed" in r.load_error
    r = run_python("import os\nos.link('/etc/passwd', 'h')\n", limits=FAST)
    assert "os.link is not allowed" in r.load_error


def test_without_the_hook_landlock_confines_files_to_the_sandbox(iso: dict) -> None:
    """The kernel layer alone (as uid 65534 here): a link to a world-readable file, the root
    directory's listing, a world-writable folder: all refused, the sandbox folder still works."""
    need(iso, "landlock")
    probe = f"/tmp/cai_sandbox_probe_{os.getpid()}"
    code = (
        "import os\n"
        "def attempt(name, f):\n"
        "    try:\n        f()\n        print(name, 'DONE')\n"
        "    except OSError as e:\n        print(name, 'refused', e.errno)\n"
        "os.symlink('/etc/passwd', 'l')\n"
        "attempt('link', lambda: open('l').read())\n"
        "attempt('read', lambda: open('/etc/passwd').read())\n"
        "attempt('list', lambda: os.listdir('/'))\n"
        f"attempt('write', lambda: open({probe!r}, 'w').write('x'))\n"
        "attempt('own', lambda: open('mine.txt', 'w').write('x'))\n"
    )
    r = run_python(code, limits=NO_HOOK)
    lines = r.stdout.split("\n")
    assert lines[:5] == ["link refused 13", "read refused 13", "list refused 13", "write refused 13", "own DONE"], r
    assert not Path(probe).exists()


def test_frames_holding_the_result_token_are_out_of_reach() -> None:
    for code in ("import sys\nsys._getframe(1)\n",
                 "try:\n    1 / 0\nexcept Exception as e:\n    e.__traceback__.tb_frame\n",
                 "g = (i for i in [1])\ng.gi_frame\n"):
        r = run_python(code, limits=FAST)
        assert r.load_error.startswith("PermissionError"), (code, r)


def test_files_written_are_capped_in_number() -> None:
    """RLIMIT_FSIZE caps one file; the count of files written caps the total bytes."""
    code = "for i in range(40):\n    open(f'f{i}', 'w').write('x' * 1000)\n"
    r = run_python(code, limits=Limits(wall_s=8, max_writes=16))
    assert "more than 16 files written" in r.load_error, r
