"""The whole backend on one machine: embedded AWS, the app, its gateways and event sources."""

from __future__ import annotations

import importlib
import json
import logging
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from devstack.aws import (
    REGION,
    REPO,
    EmbeddedAWS,
    apply_environment,
    load_template,
    local_process_environment,
)
from devstack.eventapi import EventApiEmulator, EventApiSettings
from devstack.gateway import GatewaySettings, WebSocketGateway
from devstack.idp import LocalIdentityProvider
from devstack.idp import routes as idp_routes
from devstack.lambdas import Scheduler, SqsPoller, rate_seconds
from devstack.media.captions import Captioner, recognizer_available
from devstack.media.chime_api import PREFIX as CHIME_PREFIX
from devstack.media.chime_api import ChimeMeetingsEmulator, ChimeRules
from devstack.media.events import EventBus
from devstack.media.pipelines_api import PREFIX as PIPELINES_PREFIX
from devstack.media.pipelines_api import MediaPipelinesEmulator
from devstack.media.registry import MediaRegistry
from devstack.media.server import MediaServer
from devstack.pushes import route as pushes_route
from devstack.rest import RestGateway
from devstack.stats import AWS_CALLS, cpu_seconds, install_call_counter, thread_cpu_seconds
from devstack.web import routes as web_routes

log = logging.getLogger("devstack")

LOCAL_AUDIENCE = "sohbet-local-client"

_RUNNING: list[LocalStack] = []


@dataclass
class StackOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    stage: str = "dev"
    # Seconds before a failed SQS record is received again (the queue's own
    # visibility timeout is sized for Lambda, minutes, too slow for a laptop).
    sqs_visibility_timeout: int = 2
    # Run every schedule this often instead of its rate (None: its own rate).
    schedule_seconds: float | None = None
    idle_timeout_seconds: float = 600.0
    max_connection_seconds: float = 7200.0
    extra_env: dict[str, str] = field(default_factory=dict)
    # Addresses the embedded media server offers as ICE host candidates. Empty: the bind
    # address (loopback). A LAN address lets a phone on the same network try it (opt-in).
    media_addresses: tuple[str, ...] = ()
    # The Chime emulator's request rules (rate limits, CreateMeeting conflicts): off unless
    # switched on here or with LOCAL_CHIME_RATE_LIMITS=1 (see ChimeRules.from_env).
    media_rules: ChimeRules = field(default_factory=lambda: ChimeRules.from_env())
    # Meetings end on their own as Chime's do (no audio for 5 min, ...); checked this often.
    media_auto_end: bool = True
    media_tick_seconds: float = 5.0
    # The app publishes room events once to the embedded AppSync Events emulator (/event,
    # /event/realtime) instead of posting to every member; it is served either way.
    broadcast: bool = False
    broadcast_ka_seconds: float = 60.0
    # Pollers per SQS event source (Lambda runs several batches of a queue at once; the
    # notify consumer's MaximumConcurrency is 50 in AWS).
    sqs_concurrency: dict[str, int] = field(default_factory=lambda: {"on_notify": 4})


def _chalice_environment(stage: str) -> dict[str, str]:
    """The environment .chalice/config.json gives the functions of a stage."""
    config = json.loads((REPO / ".chalice" / "config.json").read_text())
    env = dict(config.get("environment_variables", {}))
    env.update(config.get("stages", {}).get(stage, {}).get("environment_variables", {}))
    return env


def _register_anypath() -> None:
    """`{p:anypath}`: like Starlette's `path`, but newlines too (API Gateway passes them on)."""
    from starlette.convertors import Convertor, register_url_convertor

    class AnyPath(Convertor[str]):
        regex = r"[\s\S]*"

        def convert(self, value: str) -> str:
            return value

        def to_string(self, value: str) -> str:
            return value

    register_url_convertor("anypath", AnyPath())


async def _openapi_yaml(request: Any) -> Any:
    """The REST API's OpenAPI document (docs/openapi.yaml), as the local stack serves it."""
    from starlette.responses import Response

    return Response((REPO / "docs" / "openapi.yaml").read_bytes(), media_type="application/yaml")


async def _openapi_json(request: Any) -> Any:
    import yaml
    from starlette.responses import JSONResponse

    return JSONResponse(yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text()))


class LambdaContextFactory:
    def __init__(self, function_name: str) -> None:
        self.function_name = function_name

    def __call__(self) -> Any:
        from chalice.local import LambdaContext

        return LambdaContext(self.function_name, memory_size=512, max_runtime_ms=60_000)


class LocalStack:
    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self.aws = EmbeddedAWS(stage=self.options.stage)
        self.executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="lambda")
        self.pollers: list[SqsPoller] = []
        self.scheduler: Scheduler | None = None
        self.app: Any = None
        self.gateway: WebSocketGateway | None = None
        self.events: EventApiEmulator | None = None
        self.idp: LocalIdentityProvider | None = None
        self.media_server: MediaServer | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port = 0
        self.env: dict[str, str] = {}
        # The embedded media server: Chime's state (`media`, shared with the audio side), its
        # REST API (`chime`) and the EventBridge events it sends (`media_events`).
        self.media_events = EventBus(self.executor)
        self.media = MediaRegistry(
            region=REGION, event_sink=self.media_events.put, auto_end=self.options.media_auto_end
        )
        self.chime = ChimeMeetingsEmulator(self.media, lambda: self.public_url, self.options.media_rules)
        # Live captions: a real recognizer on the mix when pocketsphinx is installed; without it
        # StartMeetingTranscription answers that captions are unavailable here.
        self.captioner = Captioner(lambda: self.media_server)
        self.media.subscribe(self.captioner)
        if recognizer_available():
            self.chime.transcriber = self.captioner
        self.pipelines = MediaPipelinesEmulator(
            self.media, lambda: self.media_server, lambda: self.aws.client("s3")
        )
        # captions heard while a capture runs land in its transcription-messages folder
        self.captioner.listeners.append(self.pipelines.transcribed)
        self._media_ticker: threading.Thread | None = None
        self._media_stop = threading.Event()

    @staticmethod
    def running() -> LocalStack:
        """The one stack started in this process (test helpers reach its media server through it)."""
        if len(_RUNNING) != 1:
            raise RuntimeError(f"expected one running local stack in this process, found {len(_RUNNING)}")
        return _RUNNING[0]

    @property
    def base_url(self) -> str:
        return f"http://{self.options.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.options.host}:{self.port}/"

    def broadcast_env(self) -> dict[str, str]:
        """The settings that point the app at the stack's Event API (chalicelib/broadcast.py)."""
        return {
            "BROADCAST_HTTP_URL": f"{self.base_url}/event",
            "BROADCAST_REALTIME_URL": f"ws://{self.options.host}:{self.port}/event/realtime",
        }

    def start(self) -> LocalStack:
        started = time.perf_counter()
        opts = self.options
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
        # without it every response written in two parts waits ~40 ms for a delayed ACK (Nagle).
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((opts.host, opts.port))
        self.port = self._socket.getsockname()[1]

        install_call_counter()
        moto_url = self.aws.start()
        template = load_template()
        self.aws.deploy(template)
        platform_applications = self.aws.create_platform_applications(opts.stage)
        issuer = f"{self.base_url}/dev-idp"
        env = local_process_environment(moto_url)
        env.update(_chalice_environment(opts.stage))
        env.update(self.aws.function_environment(template))
        env.update(platform_applications)
        env.update(
            {
                "SOHBET_STAGE": opts.stage,
                "WEBSOCKET_ENDPOINT": self.base_url,
                "AUTH_ISSUER": issuer,
                "AUTH_AUDIENCE": LOCAL_AUDIENCE,
                "AUTH_JWKS_URL": f"{issuer}/.well-known/jwks.json",
                # The app's own ChimeMediaAdapter, pointed at the emulator with AWS's standard
                # service-specific endpoint variable: chalicelib's code path is the production one.
                "AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS": self.base_url + CHIME_PREFIX,
                # Capture pipelines that record the embedded media server's mix into moto's S3.
                "AWS_ENDPOINT_URL_CHIME_SDK_MEDIA_PIPELINES": self.base_url + PIPELINES_PREFIX,
                "POWERTOOLS_TRACE_DISABLED": "true",
                "POWERTOOLS_METRICS_DISABLED": "true",
                "POWERTOOLS_DEV": "false",
            }
        )
        if opts.broadcast:
            env.update(self.broadcast_env())
        env.update(opts.extra_env)
        self.env = env
        apply_environment(env)
        self.idp = LocalIdentityProvider(issuer=issuer, audience=LOCAL_AUDIENCE)

        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))
        from chalicelib.config import get_settings

        get_settings.cache_clear()
        self.app = importlib.import_module("app").app
        self.media_server = MediaServer(self.media, addresses=self.media_addresses).start()
        self.media_server.captions = self.captioner
        self._build_server()
        self._start_event_sources()
        self.ready_seconds = time.perf_counter() - started
        _RUNNING.append(self)
        return self

    @property
    def public_url(self) -> str:
        """The base URL clients are given (MediaPlacement): base_url, or the advertised LAN address
        when the stack listens on every interface (--host 0.0.0.0 --media-address IP)."""
        if self.options.host in ("0.0.0.0", "") and self.options.media_addresses:
            return f"http://{self.options.media_addresses[0]}:{self.port}"
        return self.base_url

    @property
    def media_addresses(self) -> tuple[str, ...]:
        """Where the embedded media server gathers ICE candidates: the bind address unless overridden."""
        if self.options.media_addresses:
            return self.options.media_addresses
        host = self.options.host
        return ("127.0.0.1",) if host in ("0.0.0.0", "", "localhost") else (host,)

    def _build_server(self) -> None:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.routing import Route

        opts = self.options
        handlers = {
            route_key: self.app.handler_map[entry.name]
            for route_key, entry in self.app.websocket_handlers.items()
        }
        self.gateway = WebSocketGateway(
            handlers,
            self.executor,
            LambdaContextFactory("websocket_handler"),
            GatewaySettings(
                api_id="sohbetlocal",
                stage=opts.stage,
                domain_name=f"{opts.host}:{self.port}",
                idle_timeout_seconds=opts.idle_timeout_seconds,
                max_connection_seconds=opts.max_connection_seconds,
            ),
        )
        self.events = EventApiEmulator(
            self.app.handler_map["broadcast_authorizer"],
            self.executor,
            LambdaContextFactory("broadcast_authorizer"),
            EventApiSettings(ka_seconds=opts.broadcast_ka_seconds),
        )
        from devstack.media import whip

        rest = RestGateway(self.app, opts.stage, self.executor)
        _register_anypath()
        assert self.idp is not None and self.media_server is not None
        routes: list[Any] = [
            *idp_routes(self.idp),
            Route("/dev/stats", self._stats, methods=["GET"]),
            pushes_route(self.aws.endpoint),
            Route("/openapi.yaml", _openapi_yaml, methods=["GET"]),
            Route("/openapi.json", _openapi_json, methods=["GET"]),
            *web_routes(),
            *self.chime.routes(),
            *self.events.routes(),
            *self.pipelines.routes(),
            *self.gateway.routes(),
            *whip.routes(self.media_server),
        ]
        routes.append(
            Route(
                "/{path:anypath}",
                rest.handle,
                methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
            )
        )
        starlette_app = Starlette(routes=routes)
        from devstack.protocols import BoundedH11Protocol, QuietRefusalWebSocketProtocol

        config = uvicorn.Config(
            starlette_app,
            http=BoundedH11Protocol,
            ws=QuietRefusalWebSocketProtocol,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws_max_size=4 * 1024 * 1024,  # larger than API Gateway's, so the gateway can refuse it itself
            ws_ping_interval=None,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        assert self._socket is not None
        sock = self._socket
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the local stack's server did not start")
            time.sleep(0.01)

    async def _stats(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        assert self.gateway is not None and self.media_server is not None and self.events is not None
        return JSONResponse(
            {
                "aws_calls": AWS_CALLS.snapshot(),
                "posts": self.gateway.posted,
                "broadcast": self.events.snapshot(),
                "connections": len(self.gateway.connections),
                "cpu_seconds": cpu_seconds(),
                "thread_cpu_seconds": thread_cpu_seconds(),
                "media": await self.media_server.run(self.media_server.snapshot()),
                "chime": self.chime.stats(),
            }
        )

    def _start_event_sources(self) -> None:
        from chalice.app import CloudWatchEventConfig, ScheduledEventConfig, SQSEventConfig

        sqs = self.aws.client("sqs")
        jobs = []
        for source in self.app.event_sources:
            handler = self.app.handler_map[source.name]
            if isinstance(source, SQSEventConfig):
                url = sqs.get_queue_url(QueueName=source.queue)["QueueUrl"]
                arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                    "QueueArn"
                ]
                for _ in range(self.options.sqs_concurrency.get(source.name, 1)):
                    poller = SqsPoller(
                        source.name,
                        handler,
                        sqs,
                        url,
                        arn,
                        source.batch_size,
                        LambdaContextFactory(source.name),
                        self.options.sqs_visibility_timeout,
                        REGION,
                    )
                    poller.start()
                    self.pollers.append(poller)
            elif isinstance(source, ScheduledEventConfig | CloudWatchEventConfig) and hasattr(
                source, "schedule_expression"
            ):
                every = self.options.schedule_seconds or rate_seconds(source.schedule_expression)
                jobs.append((source.name, handler, every))
            elif isinstance(source, CloudWatchEventConfig):
                # An EventBridge rule: the media server's Chime events go to it when they match.
                self.media_events.add_rule(
                    source.name, source.event_pattern, handler, LambdaContextFactory(source.name)
                )
        if jobs:
            self.scheduler = Scheduler(jobs, LambdaContextFactory("schedule"), REGION)
            self.scheduler.start()
        self._media_ticker = threading.Thread(target=self._tick_media, name="media-auto-end", daemon=True)
        self._media_ticker.start()

    def _tick_media(self) -> None:
        while not self._media_stop.wait(self.options.media_tick_seconds):
            try:
                self.media.tick()
            except Exception:
                log.exception("media auto-end tick failed")

    def stop(self) -> None:
        if self in _RUNNING:
            _RUNNING.remove(self)
        self._media_stop.set()
        for poller in self.pollers:
            poller.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.media_server is not None:
            self.media_server.stop()
        for poller in self.pollers:
            poller.join(timeout=5)
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.aws.stop()
        if self._socket is not None:
            self._socket.close()

    def mint_token(self, user: str, groups: list[str] | None = None) -> str:
        assert self.idp is not None
        return self.idp.mint(user, groups)
