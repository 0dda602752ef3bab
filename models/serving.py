"""A Triton Inference Server for the trained models: its environment and its process.

The server binary ships in ``nvidia-pytriton``, which pins numpy below 2 and so
cannot live in the analysis environment. It therefore runs from a virtual
environment of its own, created on first use (about a minute from the package
registry) under ``$AEJETS_TRITON_ENV`` or ``$AEJETS_CACHE/triton-env`` (default
``~/.cache/aejets/triton-env``). The server process is
``models/_triton_server_main.py`` run with that environment's Python.

Use :func:`triton_server` as a context manager::

    with triton_server("models/") as url:  # "triton+grpc://127.0.0.1:PORT"
        ...

or :class:`TritonServer` for a server that outlives a block (``aejets serve``).
"""

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from analysis.errors import ServingError

__all__ = [
    "TritonServer",
    "ensure_server_env",
    "free_port",
    "model_names",
    "server_env_dir",
    "triton_server",
]

log = logging.getLogger(__name__)

PYTRITON = "nvidia-pytriton==0.7.0"
# tensorflow-cpu 2.21 still supports numpy 1.26 and reads the SavedModels written
# by the analysis environment's TensorFlow 2.21.
TENSORFLOW_CPU = "tensorflow-cpu==2.21.0"
TENSORFLOW_GPU = "tensorflow[and-cuda]==2.21.0"
SERVER_SCRIPT = Path(__file__).with_name("_triton_server_main.py")
READY_LINE = "aejets-triton-ready"
HOST = "127.0.0.1"


def server_env_dir():
    """Folder of the server's virtual environment."""
    if "AEJETS_TRITON_ENV" in os.environ:
        return Path(os.environ["AEJETS_TRITON_ENV"])
    cache = Path(os.environ.get("AEJETS_CACHE", Path.home() / ".cache" / "aejets"))
    return cache / "triton-env"


def _gpu_visible():
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return False
    probe = subprocess.run([nvidia_smi, "-L"], capture_output=True, text=True)
    return probe.returncode == 0 and "GPU" in probe.stdout


def server_requirements():
    """Packages of the server environment: TensorFlow with CUDA where a GPU is seen.

    ``$AEJETS_TRITON_TENSORFLOW`` overrides the TensorFlow requirement.
    """
    default = TENSORFLOW_GPU if _gpu_visible() else TENSORFLOW_CPU
    tensorflow = os.environ.get("AEJETS_TRITON_TENSORFLOW", default)
    return [PYTRITON, "numpy<2", tensorflow]


def _read_marker(marker):
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None


def ensure_server_env(progress=None):
    """Python executable and library folder of the server environment, made if missing.

    A lock file lets parallel processes (pytest workers) wait for one creation.
    ``progress(message)`` is called before each slow step.
    """
    env_dir = server_env_dir()
    requirements = server_requirements()
    marker = env_dir / "aejets-env.json"
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(env_dir.with_name(env_dir.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = _read_marker(marker)
        if info is None or info.get("requirements") != requirements:
            info = _create_env(env_dir, requirements, progress)
            marker.write_text(json.dumps(info, indent=1))
    return Path(info["python"]), info["libdir"]


def _run_step(command, what, log_path):
    with open(log_path, "a") as out:
        out.write(f"$ {' '.join(map(str, command))}\n")
        out.flush()
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = "".join(Path(log_path).read_text().splitlines(True)[-15:])
        raise ServingError(
            f"cannot {what} for the Triton server (exit code {result.returncode}); "
            f"full log in {log_path}; last lines:\n{tail}"
        )


def _create_env(env_dir, requirements, progress):
    started = time.monotonic()
    if env_dir.exists():
        shutil.rmtree(env_dir)
    log_path = env_dir.with_name(env_dir.name + "-install.log")
    log_path.write_text("")
    notify = progress or (lambda message: log.info("%s", message))
    notify(f"creating the Triton server environment in {env_dir} (first use only)")
    _run_step([sys.executable, "-m", "venv", env_dir], "create a virtual env", log_path)
    python = env_dir / "bin" / "python"
    notify(f"installing {', '.join(requirements)} (log: {log_path})")
    _run_step(
        [python, "-m", "pip", "install", "--quiet", *requirements],
        f"install {' '.join(requirements)}",
        log_path,
    )
    libdir = subprocess.run(
        [
            python,
            "-I",
            "-c",
            "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    seconds = time.monotonic() - started
    log.info("Triton server environment ready in %.0f s", seconds)
    return {
        "python": str(python),
        "libdir": libdir,
        "requirements": requirements,
        "install_seconds": round(seconds, 1),
    }


def model_names(models_dir):
    """Names of the models under ``models_dir``: folders with a ``saved_model/``."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise ServingError(
            f"models folder {models_dir} does not exist; train models first with "
            "'aejets train --out DIR' and pass that DIR with --models"
        )
    names = sorted(p.name for p in models_dir.iterdir() if (p / "saved_model").is_dir())
    if not names:
        raise ServingError(
            f"models folder {models_dir} has no model: no <name>/saved_model/ inside; "
            "pass the --out folder of 'aejets train'"
        )
    return names


def free_port():
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def check_port_free(port, what):
    with socket.socket() as sock:
        # As servers bind: a port whose last connections are in TIME_WAIT after a
        # server stopped is free; one with a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as err:
            raise ServingError(
                f"{what} port {port} on {HOST} is in use ({err.strerror}); stop the "
                f"program using it or choose another port with --{what}-port"
            ) from err


def _get(url, timeout=2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class TritonServer:
    """One Triton server process serving every model under ``models_dir``.

    ``start()`` checks the ports, launches the process and waits until
    ``/v2/health/ready`` and every model answer; ``stop()`` sends SIGTERM and waits.
    """

    def __init__(
        self,
        models_dir,
        grpc_port=0,
        http_port=0,
        max_batch_size=4096,
        log_path=None,
        progress=None,
    ):
        self.models_dir = Path(models_dir).resolve()
        self.names = model_names(self.models_dir)
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.max_batch_size = max_batch_size
        self.log_path = Path(log_path) if log_path else None
        self.progress = progress
        self.process = None
        self._temporary_log = False  # removed after a clean stop

    @property
    def url(self):
        """The URL the scoring takes: ``triton+grpc://127.0.0.1:PORT``."""
        return f"triton+grpc://{HOST}:{self.grpc_port}"

    @property
    def http_url(self):
        return f"http://{HOST}:{self.http_port}"

    def command(self, python):
        return [
            python,
            "-I",  # keep this project's folders (models/io.py ...) off sys.path
            SERVER_SCRIPT,
            "--models",
            self.models_dir,
            "--names",
            *self.names,
            "--grpc-port",
            str(self.grpc_port),
            "--http-port",
            str(self.http_port),
            "--max-batch-size",
            str(self.max_batch_size),
        ]

    def start(self, timeout=300.0):
        if self.grpc_port == self.http_port:
            raise ServingError(
                f"--grpc-port and --http-port are both {self.grpc_port}; "
                "give them different values"
            )
        check_port_free(self.grpc_port, "grpc")
        check_port_free(self.http_port, "http")
        python, libdir = ensure_server_env(self.progress)
        env = dict(os.environ)
        # The Python backend stub must load the libpython of the server's
        # interpreter, not a system one (else: '_thread.RLock' object has no
        # attribute '_recursion_count').
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [libdir, env.get("LD_LIBRARY_PATH")])
        )
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="aejets-triton-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
            self._temporary_log = True
        log.debug("Triton server log: %s", self.log_path)
        with open(self.log_path, "w") as out:
            self.process = subprocess.Popen(
                [str(part) for part in self.command(python)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # Ctrl-C reaches it only through stop()
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        log.info(
            "Triton server ready at %s serving %s", self.url, ", ".join(self.names)
        )
        return self.url

    def _log_tail(self, lines=20):
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "".join(text.splitlines(True)[-lines:])

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        endpoints = [f"{self.http_url}/v2/health/ready"] + [
            f"{self.http_url}/v2/models/{name}/versions/1/ready" for name in self.names
        ]
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServingError(
                    f"Triton server for {self.models_dir} exited with code "
                    f"{self.process.returncode} before it was ready; log "
                    f"{self.log_path}:\n{self._log_tail()}"
                )
            if READY_LINE in self._log_tail() and all(_get(url) for url in endpoints):
                return
            time.sleep(0.5)
        raise ServingError(
            f"Triton server at {self.http_url} not ready after {timeout:.0f} s "
            f"(models {', '.join(self.names)}); log {self.log_path}:\n{self._log_tail()}"
        )

    def is_running(self):
        return self.process is not None and self.process.poll() is None

    def wait(self):
        """Block until the server process ends; its exit code."""
        return self.process.wait()

    def stop(self, timeout=30.0):
        """SIGTERM the server, wait for it to unload its models; SIGKILL after ``timeout``."""
        if not self.is_running():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("Triton server did not stop in %.0f s; killing it", timeout)
            os.killpg(self.process.pid, signal.SIGKILL)
            code = self.process.wait()
        if code == 0 and self._temporary_log:
            self.log_path.unlink(missing_ok=True)
        log.info("Triton server at %s stopped", self.url)


@contextlib.contextmanager
def triton_server(models_dir, grpc_port=0, http_port=0, timeout=300.0, **kwargs):
    """Serve every model under ``models_dir`` for the block; yields the gRPC URL.

    Ports 0 pick free ones. Keyword arguments go to :class:`TritonServer`.
    """
    server = TritonServer(models_dir, grpc_port, http_port, **kwargs)
    server.start(timeout)
    try:
        yield server.url
    finally:
        server.stop()
