"""The long-running daemon: APScheduler 3 with its job store in the certmgr database.

A restarted daemon keeps the stored jobs (and their missed run times) when their schedule is unchanged;
coalescing and a misfire grace time make a daemon that was down for a night run the renewal once on start,
not once per missed run. One worker thread: jobs never overlap within a daemon. SIGTERM/SIGINT stop it after
the running job. A second daemon on the same home refuses to start.
"""

from __future__ import annotations

import logging
import signal
import threading

from ..context import AppContext
from ..errors import OperationFailed
from ..locks import exclusive
from . import jobs
from .logfmt import event
from .schedule import MISFIRE_GRACE, DaemonSettings

log = logging.getLogger("certmgr.daemon")
JOB_FUNCTION = "certmgr.daemon.jobs:scheduled"


def node_job_store(engine, node: str):
    """APScheduler's SQLAlchemy job store limited to this node's jobs ("<node>:<job>").

    All nodes share one migrated job table; unfiltered, every node's scheduler would load and run every
    node's jobs. APScheduler 3 has no such filter, so it is added here, in one place."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from sqlalchemy import and_, select

    prefix = f"{node}:"

    class NodeJobStore(SQLAlchemyJobStore):
        def _get_jobs(self, *conditions):
            return super()._get_jobs(self.jobs_t.c.id.startswith(prefix), *conditions)

        def get_next_run_time(self):
            statement = (
                select(self.jobs_t.c.next_run_time)
                .where(and_(self.jobs_t.c.next_run_time.isnot(None), self.jobs_t.c.id.startswith(prefix)))
                .order_by(self.jobs_t.c.next_run_time)
                .limit(1)
            )
            with self.engine.begin() as connection:
                value = connection.execute(statement).scalar()
            from apscheduler.util import utc_timestamp_to_datetime

            return utc_timestamp_to_datetime(value)

        def remove_all_jobs(self):
            with self.engine.begin() as connection:
                connection.execute(self.jobs_t.delete().where(self.jobs_t.c.id.startswith(prefix)))

    return NodeJobStore(engine=engine)


def _scheduler(ctx: AppContext, node: str):
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler

    return BackgroundScheduler(
        jobstores={"default": node_job_store(ctx.database().engine, node)},
        executors={"default": ThreadPoolExecutor(1)},
        job_defaults={"coalesce": True, "max_instances": 1},
    )


def install_jobs(scheduler, settings: DaemonSettings) -> None:
    """Add or update this node's jobs; keep a stored job whose schedule did not change (it remembers
    when it should have run)."""
    for name, spec in settings.jobs.items():
        job_id = f"{settings.node}:{name}"
        trigger = spec.trigger()
        grace = int(MISFIRE_GRACE[name].total_seconds())
        existing = scheduler.get_job(job_id)
        if existing is not None and str(existing.trigger) == str(trigger):
            existing.modify(misfire_grace_time=grace, coalesce=True, max_instances=1)
            event(log, f"kept schedule {spec.expression}", job=name, next_run=existing.next_run_time.isoformat() if existing.next_run_time else None)
            continue
        scheduler.add_job(
            JOB_FUNCTION, trigger, args=[name], id=job_id, name=name, replace_existing=True,
            misfire_grace_time=grace, coalesce=True, max_instances=1,
        )
        event(log, f"scheduled {spec.expression}", job=name)


def serve(ctx: AppContext, settings: DaemonSettings, web=None) -> int:
    """Run until SIGTERM/SIGINT; ``web`` (a certmgr.web.serving.ServePlan) also serves the console."""
    lock = exclusive(ctx.home.root / "daemon.lock", f"certmgr daemon, node {settings.node}", wait=0)
    try:
        lock.__enter__()
    except OperationFailed as exc:
        raise OperationFailed(
            f"another certmgr daemon runs on {ctx.home.root}: {exc.message}", "one daemon per home; stop the other first"
        ) from None
    try:
        return _serve_locked(ctx, settings, web)
    finally:
        lock.__exit__(None, None, None)


def _serve_locked(ctx: AppContext, settings: DaemonSettings, web=None) -> int:
    from apscheduler.events import EVENT_JOB_MISSED

    ctx.issuer()  # the passphrase now, not at 02:00
    jobs.bind(ctx)
    scheduler = _scheduler(ctx, settings.node)
    scheduler.add_listener(
        lambda e: event(log, "missed run (outside the misfire grace time)", logging.WARNING, job=e.job_id.split(":")[-1], outcome="missed"),
        EVENT_JOB_MISSED,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    scheduler.start(paused=True)
    metrics_server = console = gds_server = None
    try:
        install_jobs(scheduler, settings)
        if settings.metrics_listen:
            from ..metrics import serve as serve_metrics

            metrics_server = serve_metrics(ctx, settings.metrics_listen)
            event(log, f"metrics on http://{settings.metrics_listen}/metrics", outcome="listening")
        if web is not None:
            from ..web.serving import BackgroundConsole

            console = BackgroundConsole(ctx, web)  # the CA key is loaded above: renew and revoke work there
            console.start()
            event(log, f"web console on {web.url}", outcome="listening")
        if ctx.settings.gds.serve:
            gds_server = _start_gds(ctx)
        scheduler.resume()
        event(log, "daemon started", node=settings.node, outcome="running")
        stop.wait()
        event(log, "stopping after the running job", node=settings.node, outcome="stopping")
    finally:
        if console is not None:
            console.stop()
        scheduler.shutdown(wait=True)
        if metrics_server is not None:
            metrics_server.shutdown()
        if gds_server is not None:
            gds_server.stop()
    event(log, "daemon stopped", node=settings.node, outcome="stopped")
    return 0


def _start_gds(ctx: AppContext):
    """[gds] serve = true: the GDS (`certmgr gds serve`) in this process, on [gds] listen."""
    from urllib.parse import urlsplit

    from ..opcua.gds_server import GdsThread
    from ..services.gds_identity import ensure

    listen = ctx.settings.gds.listen
    identity = ensure(ctx, urlsplit(listen).hostname)
    server = GdsThread(ctx, listen, identity)
    try:
        server.start()
    except OSError as exc:
        raise OperationFailed(f"cannot serve the GDS on {listen}: {exc.strerror or exc}",
                              "stop what holds the port, or change [gds] listen") from None
    event(log, f"GDS on {listen}", outcome="listening")
    return server
