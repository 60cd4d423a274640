"""The sandbox's trusted launcher: the child-side Python that `sandbox.run_python` runs with
``python -I -S -B -c LAUNCHER`` before any untrusted code (namespaces, rlimits, Landlock,
uid drop, audit hook, then the harness). Read `cai_bootstrap.tasks.sandbox` for the layers
and what they promise; this module only holds the program text."""

LAUNCHER = r'''
import sys, os, json
job = json.loads(sys.stdin.read())
_out = os.fdopen(job["result_fd"], "w", buffering=1)
iso = {"netns": False, "uid_dropped": False, "rlimits": False, "audit_hook": False}
try:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) == 0:          # CLONE_NEWNET
        iso["netns"] = True
    elif os.geteuid() != 0 and libc.unshare(0x10000000 | 0x40000000) == 0:  # + CLONE_NEWUSER
        iso["netns"] = True
    del libc, ctypes
except Exception as exc:
    iso["netns_error"] = repr(exc)
for _m in job["preload"]:
    try:
        __import__(_m)
    except Exception:
        pass
try:
    import resource, signal
    L = job["limits"]
    mb = 1024 * 1024
    for name, soft, hard in (
        ("RLIMIT_AS", L["memory_mb"] * mb, L["memory_mb"] * mb),
        ("RLIMIT_CPU", L["cpu_s"], L["cpu_s"] + 1),  # SIGXCPU at the soft limit, SIGKILL a second later
        ("RLIMIT_NOFILE", L["max_files"], L["max_files"]),
        ("RLIMIT_FSIZE", L["max_file_mb"] * mb, L["max_file_mb"] * mb),
        ("RLIMIT_NPROC", L["max_procs"], L["max_procs"]),
        ("RLIMIT_CORE", 0, 0),
    ):
        if hasattr(resource, name):
            resource.setrlimit(getattr(resource, name), (soft, hard))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    iso["rlimits"] = True
except Exception as exc:
    iso["rlimits_error"] = repr(exc)
os.chdir(job["workdir"])
iso["landlock"] = False


def _landlock(read_roots, workdir):
    # Kernel-enforced file access (Landlock, Linux 5.13+): from here on this process and its
    # children may read/execute only under read_roots, and do anything only under workdir,
    # whatever a path's text says (symlinks, hard links, "..", /proc/self/...). ABI 4+ also
    # refuses TCP bind/connect, ABI 6+ signals and abstract unix sockets outside the sandbox.
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))  # LANDLOCK_CREATE_RULESET_VERSION
    if abi < 1:
        return "unsupported (errno %d)" % ctypes.get_errno()
    fs = (1 << 13) - 1                       # EXECUTE .. MAKE_SYM
    if abi >= 2:
        fs |= 1 << 13                        # REFER (renames and links across directories)
    if abi >= 3:
        fs |= 1 << 14                        # TRUNCATE
    if abi >= 5:
        fs |= 1 << 15                        # IOCTL_DEV
    attr = (ctypes.c_uint64 * 3)(fs, 3 if abi >= 4 else 0, 3 if abi >= 6 else 0)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    fd = libc.syscall(444, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        return "create_ruleset failed (errno %d)" % ctypes.get_errno()

    class Beneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    read = (1 << 0) | (1 << 2) | (1 << 3)   # EXECUTE | READ_FILE | READ_DIR
    for path, allowed in [(r, read) for r in read_roots] + [(workdir, fs)]:
        try:
            pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        if not os.path.isdir(path):
            allowed &= (1 << 0) | (1 << 1) | (1 << 2) | (1 << 14) | (1 << 15)  # rights a file can hold
        rule = Beneath(allowed, pfd)
        ok = libc.syscall(445, fd, 1, ctypes.byref(rule), 0)  # LANDLOCK_RULE_PATH_BENEATH
        os.close(pfd)
        if ok != 0:
            os.close(fd)
            return "add_rule %s failed (errno %d)" % (path, ctypes.get_errno())
    if libc.prctl(38, 1, 0, 0, 0) != 0:      # PR_SET_NO_NEW_PRIVS
        os.close(fd)
        return "no_new_privs failed (errno %d)" % ctypes.get_errno()
    ok = libc.syscall(446, fd, 0)            # landlock_restrict_self
    os.close(fd)
    return "abi %d" % abi if ok == 0 else "restrict_self failed (errno %d)" % ctypes.get_errno()


try:
    _ll = _landlock(job["readable"], job["workdir"])
    iso["landlock"] = _ll.startswith("abi")
    iso["landlock_detail"] = _ll
except Exception as exc:
    iso["landlock_detail"] = repr(exc)
del _landlock
if os.geteuid() == 0:
    try:
        os.setgroups([])
        os.setgid(job["nobody"])
        os.setuid(job["nobody"])
        iso["uid_dropped"] = os.geteuid() != 0 and os.getuid() != 0
    except Exception as exc:
        iso["uid_error"] = repr(exc)
# Modules whose re-import the hook must see (so it can refuse it).
_gone = set(job["denied_imports"]) | {"resource", "signal", "_signal", "gc"} if job["limits"]["audit_hook"] else set()
for _m in [m for m in sys.modules if m.split(".")[0] in _gone]:
    del sys.modules[_m]


def _make_hook(workdir, readable, denied, block_always, path_events, getcwd, type_, str_, bytes_, int_, len_,
               PE, tuple_, max_writes):
    # Everything the hook uses is a local or a closure cell: user code cannot
    # reach it through module globals or builtins (see the module docstring).
    def norm(path):
        t = type_(path)
        if t is bytes_:
            path = path.decode("utf-8", "surrogateescape")
        elif t is not str_:
            return None                  # PathLike & co: refused (could change between checks)
        if not path.startswith("/"):
            path = getcwd() + "/" + path
        parts = []
        for part in path.split("/"):
            if part == "" or part == ".":
                continue
            if part == "..":
                if parts:
                    parts.pop()
                continue
            parts.append(part)
        return "/" + "/".join(parts)

    def inside(path, roots):
        if type_(path) is int_:
            return True
        p = norm(path)
        if p is None:
            return False
        for r in roots:
            if p == r or p.startswith(r + "/"):
                return True
        return False

    writes = [0]  # files opened for writing + directories made: with RLIMIT_FSIZE, a total-bytes quota

    def count_write():
        writes[0] += 1
        if writes[0] > max_writes:
            raise PE("sandbox: more than " + str_(max_writes) + " files written")

    def hook(event, args):
        if event in block_always or event.startswith(("socket.", "ctypes.", "winreg.", "_winapi.")):
            raise PE("sandbox: " + event + " is not allowed")
        if event == "import":
            name = args[0]
            if type_(name) is not str_ or name.split(".")[0] in denied:
                raise PE("sandbox: import of " + str_(name) + " is not allowed")
        elif event == "open":
            path, mode, flags = args[0], args[1], args[2]
            writing = ((flags or 0) & 3) != 0
            if type_(mode) is str_:
                for c in "wax+":
                    if c in mode:
                        writing = True
            if path is not None and not inside(path, (workdir,) if writing else readable):
                raise PE("sandbox: open of " + str_(path) + " is not allowed")
            if writing:
                count_write()
        elif event in path_events:
            for a in args[:2]:
                if a is not None and type_(a) is not int_ and not inside(a, (workdir,)):
                    raise PE("sandbox: " + event + " outside the sandbox directory")
            if event == "os.mkdir":
                count_write()
        elif event == "os.chdir":
            if not inside(args[0], (workdir,)):
                raise PE("sandbox: chdir outside the sandbox directory")
        elif event == "os.listdir" or event == "os.scandir":
            if len_(args) and args[0] is not None and not inside(args[0], readable):
                raise PE("sandbox: listing " + str_(args[0]) + " is not allowed")

    return hook


_wd = os.path.realpath(job["workdir"])
if job["limits"]["audit_hook"]:
    sys.addaudithook(_make_hook(
        _wd, tuple(os.path.realpath(p) for p in job["readable"]) + (_wd,), frozenset(job["denied_imports"]),
        frozenset(job["block_events"]), frozenset(job["path_events"]), os.getcwd, type, str, bytes, int, len,
        PermissionError, tuple, job["limits"]["max_writes"],
    ))
    iso["audit_hook"] = True
del _make_hook
def _harness(job, token, write, dumps, repr_, deepcopy, type_, str_, enumerate_, compile_, exec_, BaseException_,
             builtins_):
    # Locals only: user code that clears module globals or patches builtins cannot break the reporting.
    # Every line carries ``token``, which exists only in this frame (frames are out of reach:
    # the hook refuses sys._getframe and tb_frame / gi_frame / f_back & co), so a line the user
    # code writes on the inherited descriptor is ignored by the parent.
    def emit(msg):
        msg["token"] = token
        write(dumps(msg) + "\n")

    emit({"isolation": iso})
    ns = {"__name__": "__sandbox__", "__builtins__": builtins_}
    try:
        exec_(compile_(job["code"], "<generated>", "exec"), ns)
    except BaseException_ as exc:
        emit({"load_error": type_(exc).__name__ + ": " + str_(exc)[:500]})
        return
    for i, (entry, args) in enumerate_(job["calls"]):
        try:
            value = ns[entry](*deepcopy(args))
            try:
                dumps(value)
                msg = {"case": i, "result": {"value": value}}
            except BaseException_:
                msg = {"case": i, "result": {"value": None, "unserializable": repr_(value)[:500]}}
        except BaseException_ as exc:
            msg = {"case": i, "error": type_(exc).__name__ + ": " + str_(exc)[:300]}
        emit(msg)


_harness(job, job.pop("token"), _out.write, json.dumps, repr, __import__("copy").deepcopy, type, str, enumerate, compile, exec,
         BaseException, __builtins__)
try:
    sys.stdout.flush()
except BaseException:
    pass
'''
