"""The server tests/forked_cli.py starts: it imports torch, then forks one child a request, each child becoming
`python -m fomm_doctor ARGS` with the request's environment, folder, and files for stdout and stderr. Requests and
replies are JSON lines on stdin and stdout, one command at a time. The server never writes through sys.stdout (its
children inherit that object, empty) and never changes a signal handler (they keep those a fresh interpreter
sets)."""
import atexit
import gc
import json
import os
import signal
import sys
import threading

import torch  # noqa: F401  (what the commands import: loaded once here, never run, so no thread is started)


def read_line(fd: int):
    """One request, read a byte at a time so that nothing after it sits in a buffer the child inherits."""
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            return None
        line += chunk
    return line


def become(request: dict) -> None:
    """This process, as `python -m fomm_doctor ARGS` started with the request's environment and folder."""
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    for fd, path in ((1, request["out"]), (2, request["err"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    import tempfile
    tempfile.tempdir = None  # found again from the new environment
    sys.argv = ["-m", *request["args"]]
    sys.path[0] = os.getcwd()  # what -m puts first
    import runpy
    runpy._run_module_as_main("fomm_doctor")


def run(request: dict):
    """The exit status `python -m` gives for what the command did; "SIGINT" for an uncaught Ctrl-C."""
    try:
        become(request)
        return 0
    except SystemExit as exit:
        if exit.code is None or isinstance(exit.code, int):
            return exit.code or 0
        print(exit.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        return "SIGINT"
    except BaseException:
        sys.excepthook(*sys.exc_info())
        return 1


def end(status) -> None:
    """What the interpreter does at its end, less tearing its modules down: half a second with torch loaded,
    which a fresh `python -m fomm_doctor` that never imports torch does not pay. Threads are joined, atexit
    handlers run, streams flushed; an uncaught Ctrl-C ends the process by SIGINT, as Python's own end does."""
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if status == "SIGINT":
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        status = 130
    os._exit(status)


def serve() -> None:
    gc.freeze()  # torch's objects: never scanned by the children's collections, nor copied by them
    while True:
        line = read_line(0)
        if line is None:
            return
        pid = os.fork()
        if pid == 0:
            end(run(json.loads(line)))
        os.write(1, (json.dumps({"pid": pid}) + "\n").encode())
        _, status = os.waitpid(pid, 0)
        os.write(1, (json.dumps({"status": os.waitstatus_to_exitcode(status)}) + "\n").encode())


if __name__ == "__main__":
    serve()
