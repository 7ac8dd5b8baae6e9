"""Serve a model directory over TF Serving's REST and gRPC APIs: the real `tensorflow_model_server` when installed,
otherwise the built-in Python server (`ModelServer`) that implements the same routes, services and version policy."""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
from http.server import ThreadingHTTPServer
from typing import List, Optional

import grpc
from google.protobuf import text_format

from mammo_tfx.serving.admission import InFlightLimiter
from mammo_tfx.serving.grpc_api import start_grpc_server
from mammo_tfx.serving.http_handler import make_handler_class
from mammo_tfx.serving.limits import RequestLimits
from mammo_tfx.serving.repository import ModelRepository, list_complete_versions
from mammo_tfx.serving.request_log import RequestLogger, RequestLogOptions, check_log_dir, model_server_config
from mammo_tfx.serving.rest_api import RestApi
from mammo_tfx.serving.servables import Servables

logger = logging.getLogger(__name__)

MODEL_SERVER_BINARY = "tensorflow_model_server"
DEFAULT_GRPC_PORT = 8500


class ModelServer:
    """The built-in server for one model, in background threads: REST on `port` and, unless `grpc_port` is None,
    gRPC on `grpc_port`; both share the loaded model, the limits and the in-flight cap, and log a sample of answered
    predict requests to `request_logger` (closed on stop) when one is given. Use as a context manager or
    `start()`/`stop()`; port 0 picks a free port (see `.port`, `.grpc_port`)."""

    def __init__(self, model_base_path: str, model_name: str, port: int = 0, host: str = "127.0.0.1",
                 poll_interval_s: float = 2.0, limits: Optional[RequestLimits] = None,
                 grpc_port: Optional[int] = None, request_logger: Optional[RequestLogger] = None) -> None:
        self.model_name = model_name
        self.repository = ModelRepository(model_base_path, poll_interval_s=poll_interval_s)
        self.request_logger = request_logger
        self.servables = Servables(model_name, self.repository, limits or RequestLimits(), self.request_logger)
        self.api = RestApi(self.servables)
        self._limiter: Optional[InFlightLimiter] = None
        self._address = (host, port)
        self._requested_grpc_port = grpc_port
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._grpc_server: Optional[grpc.Server] = None
        self._grpc_port: Optional[int] = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server is not started")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:8501; the REST paths start with /v1/models/."""
        return f"http://{self._address[0]}:{self.port}"

    @property
    def grpc_port(self) -> int:
        if self._grpc_port is None:
            raise RuntimeError("the gRPC server is not started (grpc_port=None or not started)")
        return self._grpc_port

    @property
    def grpc_target(self) -> str:
        """host:port of the gRPC services, as grpc.insecure_channel takes it."""
        return f"{self._address[0]}:{self.grpc_port}"

    def start(self) -> "ModelServer":
        # Load before listening, so a readiness probe never sees a half-started server.
        self.repository.start()
        limits = self.servables.limits
        self._limiter = InFlightLimiter(limits.max_in_flight, limits.request_timeout_s)
        try:
            if self._requested_grpc_port is not None:
                self._grpc_server, self._grpc_port = start_grpc_server(
                    self.servables, self._limiter, self._address[0], self._requested_grpc_port)
            self._httpd = ThreadingHTTPServer(self._address, make_handler_class(self.api, self._limiter))
        except BaseException:
            # A port in use: leave no watcher thread or half-started gRPC server behind.
            self.stop()
            raise
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="rest-server", daemon=True)
        self._thread.start()
        current = self.repository.current()
        logger.info("serving model %s (%s) at %s%s", self.model_name,
                    "no version yet" if current is None else f"version {current.version}", self.url,
                    "" if self._grpc_port is None else f" and gRPC {self.grpc_target}")
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._grpc_server is not None:
            # Calls in progress get a second to finish, like REST requests whose connection is being served.
            self._grpc_server.stop(grace=1.0).wait()
            self._grpc_server = None
            self._grpc_port = None
        if self._limiter is not None:
            self._limiter.shutdown()
            self._limiter = None
        if self.request_logger is not None:
            self.request_logger.close()
        self.repository.stop()

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def resolve_model_base_path(model_dir: str, model_name: str) -> str:
    """The directory holding the integer version directories, as an absolute path.

    Accepts the base path itself (`<serving_dir>/<model_name>`) or the Pusher's serving directory above it.
    """
    candidate = os.path.join(model_dir, model_name)
    if not list_complete_versions(model_dir) and os.path.isdir(candidate):
        return os.path.abspath(candidate)
    return os.path.abspath(model_dir)


def find_model_server_binary() -> Optional[str]:
    """Path of `tensorflow_model_server` on PATH, if any."""
    return shutil.which(MODEL_SERVER_BINARY)


def model_server_command(binary: str, model_base_path: str, model_name: str, rest_port: int,
                         grpc_port: int = DEFAULT_GRPC_PORT, limits: RequestLimits = RequestLimits(),
                         model_config_file: Optional[str] = None) -> List[str]:
    """The `tensorflow_model_server` command line for one model with REST and gRPC.

    The REST deadline is `limits.request_timeout_s`, and REST requests are worked on by `limits.max_in_flight`
    threads (TF Serving queues the others instead of answering 429). Image limits need no flag: the exported graph
    enforces them. `model_config_file` (e.g. with a `logging_config`) replaces the model name and base path flags.
    """
    if rest_port == grpc_port:
        raise ValueError(f"REST and gRPC need different ports (both {rest_port})")
    model = ([f"--model_config_file={model_config_file}"] if model_config_file else
             [f"--model_name={model_name}", f"--model_base_path={model_base_path}"])
    return [binary, f"--port={grpc_port}", f"--rest_api_port={rest_port}", *model,
            f"--rest_api_num_threads={limits.max_in_flight}",
            f"--rest_api_timeout_in_ms={round(limits.request_timeout_s * 1000)}"]


def write_model_server_config(model_base_path: str, model_name: str, log_dir: str, sampling_rate: float) -> str:
    """A model config file with the request logging config, beside the logs (never beside the model); its path."""
    path = os.path.join(log_dir, f"{model_name}.model_config.pbtxt")
    os.makedirs(log_dir, exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text_format.MessageToString(model_server_config(model_base_path, model_name, log_dir,
                                                                     sampling_rate)))
    return path


def serve(model_dir: str, model_name: str, port: int, host: str = "127.0.0.1", *,
          grpc_port: int = DEFAULT_GRPC_PORT, poll_interval_s: float = 2.0,
          limits: Optional[RequestLimits] = None, use_model_server_binary: bool = True,
          request_log_dir: Optional[str] = None, request_log: Optional[RequestLogOptions] = None) -> int:
    """Serve `model_name` from `model_dir` on REST `port` and gRPC `grpc_port` until interrupted; returns an exit
    code. Port 0 picks a free port (printed at start).

    With `tensorflow_model_server` on PATH (and `use_model_server_binary`) that binary runs in the foreground;
    it listens on all interfaces, so `host` applies only to the built-in server. `request_log_dir`: answered
    predict requests are sampled there (`request_log.sampling_rate`), by either server.
    """
    base_path = resolve_model_base_path(model_dir, model_name)
    limits = limits or RequestLimits()
    request_log = request_log or RequestLogOptions()
    if request_log_dir:
        request_log_dir = check_log_dir(request_log_dir, base_path)
    binary = find_model_server_binary() if use_model_server_binary else None
    if binary is not None:
        config_file = None
        if request_log_dir:
            config_file = write_model_server_config(base_path, model_name, request_log_dir,
                                                    request_log.sampling_rate)
            logger.warning("request logging asks %s for a request logger (model config %s); builds without a "
                           "registered LogCollector refuse to start with 'No request-logger-creator provided' "
                           "(docs/monitoring.md)", binary, config_file)
        command = model_server_command(binary, base_path, model_name, port, grpc_port, limits, config_file)
        logger.info("running %s", " ".join(command))
        return subprocess.call(command)
    if not list_complete_versions(base_path):
        logger.warning("no complete version under %s yet; the model will be served once one is pushed", base_path)
    server = ModelServer(base_path, model_name, port=port, host=host, poll_interval_s=poll_interval_s,
                         limits=limits, grpc_port=grpc_port,
                         request_logger=RequestLogger(request_log_dir, base_path, request_log)
                         if request_log_dir else None).start()
    if request_log_dir:
        print(f"logging {request_log.sampling_rate:.0%} of answered predict requests to {request_log_dir}; they "
              "hold patient images", flush=True)
    print(f"serving model {model_name} from {base_path} at {server.url}/v1/models/{model_name} and gRPC "
          f"{server.grpc_target} (Ctrl-C stops)", flush=True)
    try:
        _wait_for_termination()
    finally:
        server.stop()
    return 0


def _wait_for_termination() -> None:
    """Block until Ctrl-C or SIGTERM (what Kubernetes and process managers send)."""
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    else:
        previous = None
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
