"""Reaching a Dask cluster for a batch: importing Dask (the optional extra), connecting to the
scheduler or starting a LocalCluster, and checking the workers before any task is sent. Each
failure is one CnnError line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import __version__
from ..errors import CnnError
from .tasks import version_line

if TYPE_CHECKING:
    from . import ClusterSettings


def import_distributed():
    """The distributed package (Dask's scheduler and client), or the line that says how to install it."""
    try:
        import distributed
    except ImportError:
        raise CnnError("runs batches on Dask's distributed scheduler, which is not installed: "
                       "pip install 'cnncli[dask]'", param="scheduler") from None
    import logging

    # Dask's own log lines (a worker restarted, a slow event loop) are not this command's messages.
    logging.getLogger("distributed").setLevel(logging.ERROR)
    return distributed


def client_for(settings: ClusterSettings):
    """A client of the scheduler at ``settings.address`` (and the LocalCluster it names), or one
    CnnError line when it cannot be reached within the connect timeout."""
    import logging

    from . import LOCAL

    distributed = import_distributed()
    if settings.address == LOCAL:
        import dask

        # Any free port for its web server (8787 may be another cluster's); its workers' logs (a task
        # that raised: a usage error) are not this command's messages; nor is their profiler, whose
        # samples no one sees, worth its few percent of the time.
        with dask.config.set({"distributed.worker.profile.enabled": False}):
            cluster = distributed.LocalCluster(n_workers=settings.workers, threads_per_worker=1, processes=True,
                                               dashboard_address=":0", silence_logs=logging.CRITICAL)
        try:
            return distributed.Client(cluster, set_as_default=False), cluster
        except BaseException:
            cluster.close()
            raise
    _reach(settings)
    try:
        client = distributed.Client(settings.address, timeout=settings.connect_timeout, set_as_default=False)
    except (OSError, ValueError) as err:  # it went away since _reach
        raise _unreachable(settings, err) from None
    return client, None


def _reach(settings: ClusterSettings) -> None:
    """Knock on the scheduler's door (Dask's handshake) before making a Client, which, when it cannot
    connect, takes twice its timeout more to close and then complains at exit."""
    import asyncio

    from distributed.comm import connect
    from distributed.security import Security

    address = settings.address

    async def knock() -> None:
        comm = await connect(address, timeout=settings.connect_timeout, **Security().get_connection_args("client"))
        await comm.close()

    try:
        asyncio.run(knock())
    except ValueError as err:  # not an address: no scheme it knows, no port
        raise CnnError(f"is not a Dask scheduler's address ({err}); expected e.g. tcp://host:8786, or local",
                       source=address) from None
    except Exception as err:  # refused, timed out, no such host, or not a Dask scheduler
        raise _unreachable(settings, err) from None


def _unreachable(settings: ClusterSettings, err: BaseException) -> CnnError:
    # Dask says "Timed out trying to connect"; why is in its cause: "in <TCPConnector ...>: ConnectionRefusedError: ..."
    cause = str(err.__cause__ or "") or str(err)
    detail = " ".join(cause.split(">: ", 1)[-1].split())
    if not detail or detail.startswith("Timed out trying to connect"):
        detail = "no answer"
    detail = detail if len(detail) <= 160 else detail[:160] + "..."
    return CnnError(f"cannot reach the Dask scheduler within {settings.connect_timeout:g} s (--connect-timeout): "
                    f"{detail}", source=settings.address)


def check_workers(client, settings: ClusterSettings) -> int:
    """Wait for a worker; refuse workers whose cnncli is missing or another version (one line naming
    the first); return the number of worker threads."""

    def cnncli_version() -> str | None:  # defined in here: Dask sends it by value, so a worker without cnncli runs it
        try:
            import cnncli
        except ImportError:
            return None
        return str(getattr(cnncli, "__version__", "unknown"))

    try:
        client.wait_for_workers(1, timeout=settings.connect_timeout)
    except TimeoutError:
        raise CnnError(f"the Dask scheduler has no workers (waited {settings.connect_timeout:g} s, "
                       f"--connect-timeout); start some, e.g. dask worker {settings.address}",
                       source=settings.address) from None
    versions = client.run(cnncli_version, on_error="return")
    for worker, version in sorted(versions.items()):
        if isinstance(version, BaseException):
            raise CnnError(f"cannot ask the worker its cnncli version: {type(version).__name__}: {version}",
                           source=worker)
        if version != __version__:
            raise CnnError(version_line(worker, version, __version__))
    # Results straight from the workers, when this machine reaches them: through the scheduler,
    # each byte is sent twice and the scheduler spends a tenth of the batch's time passing them on.
    client.direct_to_workers = _reachable(sorted(versions)[:4], min(1.0, settings.connect_timeout))
    return max(1, sum(client.nthreads().values()))


def _reachable(workers: list[str], timeout: float) -> bool:
    """Whether each of these workers answers Dask's handshake from here within ``timeout``."""
    import asyncio

    from distributed.comm import connect
    from distributed.security import Security

    async def knock(address: str) -> None:
        comm = await connect(address, timeout=timeout, **Security().get_connection_args("client"))
        await comm.close()

    async def knock_all() -> None:
        await asyncio.gather(*(knock(worker) for worker in workers))

    try:
        asyncio.run(knock_all())
    except Exception:  # behind a gateway, a NAT, another network: the scheduler passes results on
        return False
    return bool(workers)


