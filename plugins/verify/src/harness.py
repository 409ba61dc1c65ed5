# The code verifier's sandbox harness. rco runs it as `python3 -I -c <this file>` in an
# empty temporary directory, in its own process group, and writes one JSON request on its
# stdin: {"program", "setup", "tests", "entry_point", "cpu_seconds", "memory_bytes",
# "output_bytes"}. It writes one JSON result on the stdout it was started with:
# {"passed", "total", "error", "network"}. Everything the candidate prints goes to
# `output.txt` in the directory, which rco reads (truncated) afterwards.
#
# Isolation, from the operating system first: a new network namespace (unshare), an
# unprivileged user when started as root (so the file system's permissions and the process
# limit apply), resource limits on CPU time, address space, file size and processes. Then,
# inside Python, an audit hook that refuses new processes, sockets and writes outside the
# directory, so that a candidate that tries gets a clear error rather than a half-run.
import ast
import ctypes
import json
import os
import resource
import signal
import sys

sys.dont_write_bytecode = True
request = json.loads(sys.stdin.read())
sys.stdin.close()
home = os.getcwd()
result_fd = os.dup(1)


def finish(result):
    data = (json.dumps(result) + "\n").encode()
    while data:
        data = data[os.write(result_fd, data):]
    os._exit(0)


# The network: a namespace of its own, with no interface up.
CLONE_NEWNET, CLONE_NEWUSER = 0x40000000, 0x10000000
libc = ctypes.CDLL(None, use_errno=True)
flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWUSER | CLONE_NEWNET
if libc.unshare(flags) == 0:
    network = "isolated (a new network namespace)"
else:
    network = "not isolated: unshare failed (%s); sockets are refused inside Python only" % (
        os.strerror(ctypes.get_errno())
    )

# The candidate's output: a file in the directory, capped by the file-size limit.
out = os.open(os.path.join(home, "output.txt"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.dup2(out, 1)
os.dup2(out, 2)
os.close(out)
sys.stdout = open(1, "w", buffering=1, closefd=False)
sys.stderr = open(2, "w", buffering=1, closefd=False)
# Writing past the limit fails with an error instead of killing the process.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

# An unprivileged user, so that the limit on processes and the file system's permissions
# hold (root ignores both).
if os.geteuid() == 0:
    nobody = 65534
    for path in (home, os.path.join(home, "output.txt")):
        os.chown(path, nobody, nobody)
    os.setgroups([])
    os.setgid(nobody)
    os.setuid(nobody)

cpu = int(request["cpu_seconds"])
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
memory = int(request["memory_bytes"])
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
size = int(request["output_bytes"])
resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def inside(path):
    try:
        path = os.fsdecode(path) if not isinstance(path, int) else None
    except Exception:
        return False
    if path is None:
        return True  # an open file descriptor
    real = os.path.realpath(os.path.join(home, path))
    return real == home or real.startswith(home + os.sep)


REFUSED = {
    "os.fork", "os.forkpty", "os.system", "os.posix_spawn", "os.spawn", "os.exec",
    "os.kill", "os.killpg", "subprocess.Popen", "pty.spawn", "ctypes.dlopen",
    "socket.connect", "socket.bind", "socket.sendto", "socket.getaddrinfo",
    "socket.gethostbyname", "socket.__new__",
}
CHANGES = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown",
           "os.link", "os.symlink", "os.truncate", "os.utime", "shutil.rmtree"}


def audit(event, args):
    if event in REFUSED:
        raise PermissionError("the sandbox refuses %s" % event)
    if event == "open" and len(args) >= 2:
        path, mode = args[0], args[1]
        writing = isinstance(mode, str) and any(c in mode for c in "wax+")
        if isinstance(mode, int) or mode is None:
            writing = len(args) > 2 and isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        if writing and not inside(path):
            raise PermissionError("the sandbox refuses writing outside its directory: %r" % (path,))
    if event in CHANGES and args and not inside(args[0]):
        raise PermissionError("the sandbox refuses %s outside its directory" % event)


def short(error):
    text = "%s: %s" % (type(error).__name__, error)
    return text[:500]


def has_assert(node):
    return any(isinstance(n, ast.Assert) for n in ast.walk(node))


def run():
    program, setup = request["program"], request.get("setup") or ""
    tests, entry = request["tests"], request.get("entry_point")
    ns = {"__name__": "__main__", "__builtins__": __builtins__}
    sys.addaudithook(audit)
    # The task's own code first (imports, helpers, the stub), then the candidate.
    try:
        exec(compile(setup, "<task>", "exec"), ns)
    except BaseException:
        pass
    try:
        exec(compile(program, "<candidate>", "exec"), ns)
    except BaseException as e:
        # A function body written as a completion of the task's code.
        try:
            ns = {"__name__": "__main__", "__builtins__": __builtins__}
            exec(compile(setup + program, "<candidate>", "exec"), ns)
        except BaseException:
            return {"passed": 0, "total": max(count_tests(tests, entry), 1), "error": "the program did not run: " + short(e)}
    if entry and not callable(ns.get(entry)):
        return {"passed": 0, "total": max(count_tests(tests, entry), 1),
                "error": "the program defines no function `%s`" % entry}
    tree = ast.parse(tests)
    units, scope = tree.body, ns
    if entry and any(isinstance(n, ast.FunctionDef) and n.name == "check" for n in tree.body):
        # HumanEval: `def check(candidate): ...` — each statement of its body on its own,
        # with the candidate bound to the parameter's name.
        exec(compile(tests, "<tests>", "exec"), ns)
        check = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check")
        units = check.body
        scope = dict(ns)
        scope[check.args.args[0].arg if check.args.args else "candidate"] = ns[entry]
    passed = total = 0
    error = None
    for unit in units:
        counted = has_assert(unit)
        total += counted
        module = ast.Module(body=[unit], type_ignores=[])
        try:
            exec(compile(module, "<tests>", "exec"), scope)
            passed += counted
        except BaseException as e:
            if error is None:
                error = short(e)
            if not counted:
                # A setup statement failed: the tests after it cannot run as written.
                total += sum(has_assert(u) for u in units[units.index(unit) + 1:])
                break
    if total == 0:
        return {"passed": 0, "total": 0, "error": "the tests contain no assert"}
    return {"passed": passed, "total": total, "error": error}


def count_tests(tests, entry):
    try:
        tree = ast.parse(tests)
    except SyntaxError:
        return 1
    for n in tree.body:
        if isinstance(n, ast.FunctionDef) and n.name == "check":
            return sum(has_assert(u) for u in n.body)
    return sum(has_assert(u) for u in tree.body)


try:
    outcome = run()
except BaseException as e:
    outcome = {"passed": 0, "total": 1, "error": short(e)}
outcome["network"] = network
finish(outcome)
