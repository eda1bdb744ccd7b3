"""Joining a running Ray cluster (``--address``): checked before Ray is imported, bounded, interruptible.

Three things ``ray.init(address=...)`` does on its own that a user of ``lstm-sweep search
--address`` should not meet:

* **No cluster there.** Ray retries for minutes ("Failed to connect to GCS at address ...")
  and ignores SIGTERM meanwhile. :func:`check_reachable` first opens a plain TCP connection to
  the cluster's port (a few seconds at most), so "nothing listens there" is one line at once;
  :data:`CONNECT_ENV` bounds Ray's own wait (about 30 s) for a port that answers but is no Ray
  cluster; and :func:`connect` lets Ctrl-C or SIGTERM end that wait.
* **A cluster bound to 127.0.0.1** (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 ray start --head
  --node-ip-address 127.0.0.1``, or Ray's own ``cluster_utils.Cluster``): on Linux Ray rewrites
  an address of 127.0.0.1 to the machine's network address, where nothing listens.
  :func:`prepare_environment` (called by the CLI before ``ray`` is imported) sees that the port
  answers on loopback only and turns that rewrite off for this process.
* **Messages.** Errors name the address as the user gave it, not Ray's rewrite of it.

Nothing here imports Ray: :func:`prepare_environment` must run before the first ``import ray``.

Example:
    >>> prepare_environment("127.0.0.1:6379")  # doctest: +SKIP
    >>> check_reachable("127.0.0.1:6379")  # doctest: +SKIP
    >>> context = connect("127.0.0.1:6379", configure_logging=False)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

from lstm_sweep.errors import ConfigError

# Read by Ray when it connects (RAY_<name> environment variables of its config), set unless the
# user set them: two attempts of about 16 s each (5 s to connect, 5 s for the cluster's id, ...).
CONNECT_ENV = {"RAY_gcs_server_port_wait_time_s": "2", "RAY_py_gcs_connect_timeout_s": "5"}
PROBE_SECONDS = 5.0  # a TCP connection to the cluster's port: refused at once, or this long for a silent host
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray keeps to 127.0.0.1 (read when ray is imported)


def parse_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``host:port`` (IPv6 as ``[::1]:port``); ConfigError naming the flag otherwise.

    Example:
        >>> parse_address("127.0.0.1:6379")
        ('127.0.0.1', 6379)
    """
    host, sep, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--address {address}: expected host:port (e.g. 127.0.0.1:6379, the address "
                          "`ray start --head` printed) or auto")
    return host, int(port)


def resolve(address: str) -> str | None:
    """The ``host:port`` that ``address`` stands for, as Ray would find it, or None when Ray
    would have to look for one itself: ``auto`` is ``$RAY_ADDRESS``, else the address the last
    ``ray start`` on this machine recorded (Ray's ``ray_current_cluster`` file)."""
    if address != "auto":
        return address
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    # Where Ray keeps it (ray._common.utils.get_ray_address_file), without importing Ray.
    tmp = os.environ.get("RAY_TMPDIR") or (os.environ.get("TMPDIR") if sys.platform.startswith("linux") else None)
    file = Path(tmp or "/tmp") / "ray" / "ray_current_cluster"
    try:
        found = file.read_text().strip()
    except OSError:
        return None
    return found or None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine's loopback (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listens(host: str, port: int, timeout: float = PROBE_SECONDS) -> str:
    """"" when something accepts a TCP connection at ``host:port``, else why not (refused, timed out)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return ""
    except socket.timeout:
        return f"no answer in {timeout:g} s"
    except OSError as e:
        return e.strerror or str(e)


def network_address() -> str | None:
    """This machine's address on the network, as Ray picks it (the source of a route to the
    internet; no packet is sent), or None when it has none."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("8.8.8.8", 80))
        found = s.getsockname()[0]
        return None if is_loopback(found) else found
    return None


def prepare_environment(address: str | None, environ: Any = os.environ) -> None:
    """Set what Ray reads when it is imported: before the first ``import ray`` of the process.

    With no address (a local Ray of our own) and with a cluster that listens on 127.0.0.1
    only, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, so Ray keeps 127.0.0.1 rather than rewriting
    it to the machine's network address. With an address, Ray's connection wait is bounded
    (:data:`CONNECT_ENV`). Values the user set win.
    """
    if address is None:
        environ.setdefault(LOOPBACK_SWITCH, "0")
        return
    for name, value in CONNECT_ENV.items():
        environ.setdefault(name, value)
    target = resolve(address)
    if target is None or target.startswith("ray://"):
        return
    try:
        host, port = parse_address(target)
    except ConfigError:
        return  # check_reachable says so, naming the flag
    if not is_loopback(host) or listens("127.0.0.1", port, timeout=1.0):
        return
    outside = network_address()
    # Bound to loopback: it answers on 127.0.0.1 and not where Ray would send us instead.
    if outside is None or listens(outside, port, timeout=1.0):
        environ.setdefault(LOOPBACK_SWITCH, "0")


def check_reachable(address: str) -> None:
    """ConfigError unless something listens at the cluster's ``host:port`` (a TCP connection,
    :data:`PROBE_SECONDS` at most), naming ``address`` as the user gave it. ``auto`` with no
    cluster recorded on this machine is left to Ray (it looks for one)."""
    target = resolve(address)
    if target is None:
        return
    host, port = parse_address(target)
    why = listens(host, port)
    if why:
        given = address if target == address else f"{target} (--address {address})"
        raise ConfigError(f"--address {address}: no Ray cluster answers at {given} ({why}): start one there "
                          "(`ray start --head`) or pass the address that `ray start` printed")


def connect(address: str, **init_kwargs: Any):
    """``ray.init(address=address, ...)``, checked first (:func:`check_reachable`), its wait
    bounded (:data:`CONNECT_ENV`) and ended by Ctrl-C or SIGTERM (exit status 130); a cluster
    that does not take us is a ConfigError naming ``address`` as given."""
    check_reachable(address)
    import ray

    with _signals_end_the_wait(address):
        try:
            return ray.init(address=address, **init_kwargs)
        except ConnectionError as e:
            cause = f"{e.__cause__ or e}"
            if "InvalidAuthToken" in cause or "Authentication token" in cause:
                raise ConfigError(f"--address {address}: the Ray cluster there uses token authentication and this "
                                  "driver has no token: set RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN, or "
                                  "~/.ray/auth_token as `ray get-auth-token` prints it)") from None
            if resolve(address) is None:
                raise ConfigError(f"--address {address}: no Ray cluster runs on this machine (none recorded by "
                                  "`ray start`, RAY_ADDRESS unset): start one with `ray start --head`, or pass "
                                  "its host:port") from None
            raise ConfigError(f"--address {address}: no Ray cluster answers at {address} (something listens "
                              "there, but Ray could not join it within about 30 s): check the address that "
                              "`ray start` printed, and that this machine's Ray version is the cluster's") from None


@contextlib.contextmanager
def _signals_end_the_wait(address: str) -> Iterator[None]:
    """While Ray waits for a cluster its C++ client holds the main thread, and Python's signal
    handlers (Ray's own SIGTERM handler among them) never run; Python still writes each
    signal's number to the wakeup fd, so a thread watching it can end the process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    try:
        previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except (ValueError, OSError):
        reader.close()
        writer.close()
        yield
        return
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if not select.select([reader], [], [], 0.2)[0]:
                continue
            for number in reader.recv(64):
                if number in (signal.SIGINT, signal.SIGTERM):
                    from lstm_sweep.console import write_now  # past the CLI's filter of stderr

                    write_now(f"lstm-sweep: interrupted while joining the Ray cluster at {address}\n")
                    os._exit(130)  # nothing to clean up: this process has joined nothing yet

    thread = threading.Thread(target=watch, name="lstm-sweep-join-signals", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()
