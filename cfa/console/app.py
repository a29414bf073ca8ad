"""The console's FastAPI app: pages, the live event stream, the JSON API and the action route.

:func:`create_app` builds it over one audit store (a SQLite file or a ``postgresql://`` URL).
Every read goes through :mod:`cfa.desk.reads` with a reader opened for the request (FastAPI
runs the plain ``def`` routes in a thread pool, and a SQLite connection stays in its thread);
the live state comes from :class:`cfa.console.stream.Feeds` (one tail per run); every action
through :func:`cfa.console.actions.perform` (``cfa.desk.submit`` as ``person:<operator>``).
:class:`cfa.console.security.Guard` wraps the whole app (token, cookie, CSRF, Origin, Host,
headers).

Pages: ``/`` sessions, ``/runs/{run}`` live, ``/runs/{run}/traces``, ``/decisions/{seq}``,
``/runs/{run}/risk``, ``/runs/{run}/plots``, ``/login``; stream: ``/runs/{run}/events``;
actions: ``POST /actions`` (forms), ``POST /api/actions`` (JSON); API: ``/api/sessions``,
``/api/runs/{run}/state``, ``/api/runs/{run}/traces``, ``/api/decisions/{seq}``,
``/api/runs/{run}/pending``, ``/api/runs/{run}/risk``, ``/api/runs/{run}/charts``. ``{run}``
is a run id, a unique prefix of one, or ``latest``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, unquote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from cfa.console import views
from cfa.console.actions import ActionError, arguments_from_form, perform
from cfa.console.security import COOKIE, Binding, Guard, Tokens
from cfa.console.stream import Feeds, events
from cfa.desk import DeskError

FLASH_COOKIE: Final = "cfa_flash"
TRACE_LIMIT_MAX: Final = 1000
RISK_LIMIT: Final = 200
REQUESTS_LIMIT: Final = 30


@dataclass(frozen=True)
class ConsoleConfig:
    """What one console serves: the store ``db``, its ``tokens``, the ``binding`` it listens
    on, and the ``operator`` name the action forms are pre-filled with (may be empty)."""

    db: str
    tokens: Tokens
    binding: Binding
    operator: str = ""


class NotFound(DeskError):
    """A run or a decision the store does not have (HTTP 404)."""


def _status(exc: DeskError) -> int:
    text = str(exc)
    if isinstance(exc, NotFound) or text.startswith(("no run", "no decision", "no runs")):
        return 404
    return 400


def create_app(config: ConsoleConfig) -> FastAPI:
    """The console app over ``config.db``, guarded (see :mod:`cfa.console.security`)."""
    from cfa.desk import reads

    env = views.environment()
    feeds = Feeds(config.db)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        feeds.close()

    app = FastAPI(
        title="cfa console", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.feeds = feeds
    app.mount("/static", StaticFiles(directory=views.STATIC), name="static")

    # -- helpers ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def reader() -> Iterator[Any]:
        with reads.open_reader(config.db) as r:
            yield r

    def run_of(r: Any, run: str) -> str:
        run_id = reads.resolve_run(r, run)
        if run_id is None:
            raise DeskError("name one run, not 'all'")
        return run_id

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        auth = getattr(request.state, "auth", None) or {}
        flash = None
        raw = request.cookies.get(FLASH_COOKIE)
        if raw:
            with contextlib.suppress(ValueError, TypeError):
                got = json.loads(unquote(raw))
                if isinstance(got, dict):
                    flash = {"kind": str(got.get("kind")), "text": str(got.get("text"))}
        context.setdefault("run_id", None)
        html = env.get_template(name).render(
            csrf=auth.get("csrf") or "",
            operator=config.operator,
            flash=flash,
            db_name=_store_name(config.db),
            **context,
        )
        resp = HTMLResponse(html, status_code=status)
        if raw:
            resp.delete_cookie(FLASH_COOKIE, path="/")
        return resp

    def problem(request: Request, exc: Exception, status: int = 400) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc)}, status_code=status)
        return page(request, "problem.html", status=status, message=str(exc), code=status)

    @app.exception_handler(DeskError)
    async def desk_error(request: Request, exc: DeskError) -> Response:
        return problem(request, exc, _status(exc))

    @app.exception_handler(ActionError)
    async def action_error(request: Request, exc: ActionError) -> Response:
        return problem(request, exc, 400)

    # -- login --------------------------------------------------------------------------------

    def login_response(token: str | None, request: Request) -> Response:
        if token is None:
            return page(request, "login.html", message=None)
        if not config.tokens.check_token(token.strip()):
            return page(request, "login.html", status=401, message="wrong token")
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(
            COOKIE, config.tokens.new_cookie(), httponly=True, samesite="strict", path="/"
        )
        return resp

    @app.get("/login", response_class=HTMLResponse)
    def login(request: Request, token: str | None = None) -> Response:
        """With ``?token=``: check it, set the session cookie, redirect to ``/`` (the URL
        carrying the token is left at once). Without: the login form."""
        return login_response(token, request)

    @app.post("/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> Response:
        """The login form's POST (field ``token``)."""
        form = await request.form()
        token = form.get("token")
        return login_response(token if isinstance(token, str) else "", request)

    @app.post("/logout")
    def logout() -> Response:
        """Drop the session cookie."""
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    # -- pages --------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> Response:
        """The sessions of the store, newest first."""
        try:
            with reader() as r:
                rows = reads.sessions(r)
        except DeskError as exc:
            return page(request, "index.html", sessions=[], problem=str(exc))
        return page(request, "index.html", sessions=rows, problem=None)

    @app.get("/runs/{run}", response_class=HTMLResponse)
    def live(request: Request, run: str) -> Response:
        """The live page of a run: markets, totals, approvals, controls, requests."""
        with reader() as r:
            run_id = run_of(r, run)
        _, state, _ = feeds.get(run_id).snapshot(5.0)
        if state is None:
            err = feeds.get(run_id).error or "the live state did not come within 5 s"
            raise DeskError(f"run {run_id}: {err}")
        return page(request, "live.html", run_id=run_id, state=state)

    @app.get("/runs/{run}/events")
    async def run_events(request: Request, run: str) -> Response:
        """``text/event-stream`` of the run's live state (see :func:`cfa.console.stream.events`)."""

        def resolve() -> str:
            with reader() as r:
                return run_of(r, run)

        run_id = await run_in_threadpool(resolve)
        feed = feeds.get(run_id)
        return StreamingResponse(
            events(feed, request.is_disconnected, stopping=feeds.stopping),
            media_type="text/event-stream",
            headers={"X-Accel-Buffering": "no"},
        )

    def trace_query(request: Request) -> dict[str, Any]:
        q = request.query_params
        limit_text = (q.get("limit") or "50").strip()
        try:
            limit = int(limit_text)
        except ValueError:
            raise DeskError(f"limit: {limit_text!r} is not a whole number") from None
        if not 0 <= limit <= TRACE_LIMIT_MAX:
            raise DeskError(f"limit: between 0 and {TRACE_LIMIT_MAX}, got {limit}")
        out: dict[str, Any] = {"limit": limit}
        for key in ("market", "agent"):
            v = (q.get(key) or "").strip()
            out[key] = v or None
        for key in ("since", "until"):
            v = (q.get(key) or "").strip()
            out[f"{key}_ms"] = reads.parse_time(v, key) if v else None
        out["outcomes"] = [
            o.strip() for item in q.getlist("outcome") for o in item.split(",") if o.strip()
        ]
        return out

    def find_traces(request: Request, run: str) -> tuple[str, list[dict[str, Any]], int]:
        query = trace_query(request)
        with reader() as r:
            run_id = run_of(r, run)
            rows, total = reads.traces(r, run_id=run_id, **query)
        return run_id, rows, total

    @app.get("/runs/{run}/traces", response_class=HTMLResponse)
    def traces_page(request: Request, run: str) -> Response:
        """The decisions of a run, filtered like ``cfa traces`` (a GET form)."""
        from cfa.audit.schema import DECISION_OUTCOMES

        q = request.query_params
        form: dict[str, Any] = {
            k: q.get(k, "") for k in ("market", "agent", "since", "until", "limit")
        }
        form["outcome"] = q.getlist("outcome")
        try:
            run_id, rows, total = find_traces(request, run)
            problem_text = None
        except DeskError as exc:
            if _status(exc) == 404:
                raise
            with reader() as r:
                run_id = run_of(r, run)
            rows, total, problem_text = [], 0, str(exc)
        from cfa.reports.history import run_markets

        with reader() as r:
            markets = run_markets(r, r.run(run_id))
        return page(
            request,
            "traces.html",
            run_id=run_id,
            rows=rows,
            total=total,
            form=form,
            outcomes=DECISION_OUTCOMES,
            markets=markets,
            problem=problem_text,
        )

    def load_decision(seq: str) -> tuple[Any, list[Any], list[dict[str, Any]]]:
        if not seq.strip().isdigit():
            raise DeskError(f"decision: expected an audit seq (a whole number), got {seq!r}")
        with reader() as r:
            return reads.decision(r, seq)

    @app.get("/decisions/{seq}", response_class=HTMLResponse)
    def decision_page(request: Request, seq: str) -> Response:
        """One decision: context, rationale, tool calls and verdicts, parameters, responses,
        phases, and what followed over 10 minutes."""
        d, related, followed = load_decision(seq)
        return page(
            request,
            "decision.html",
            run_id=d.run_id,
            d=d.detail(),
            phases=[{"seq": x.seq, "phase": x.phase, "outcome": x.outcome} for x in related],
            followed=followed,
        )

    @app.get("/runs/{run}/risk", response_class=HTMLResponse)
    def risk_page(request: Request, run: str) -> Response:
        """Risk events of a run: denials, breaker trips, trading-state changes, newest first."""
        market = (request.query_params.get("market") or "").strip() or None
        with reader() as r:
            run_id = run_of(r, run)
            rows = reads.risk_events(r, run_id=run_id, market=market, limit=RISK_LIMIT)
        return page(request, "risk.html", run_id=run_id, rows=rows, market=market or "")

    @app.get("/runs/{run}/plots", response_class=HTMLResponse)
    def plots_page(request: Request, run: str) -> Response:
        """The run report's charts, drawn by ``static/plots.js`` from ``/api/runs/{run}/charts``
        (drag to zoom on time; decision markers link to the decision's page)."""
        with reader() as r:
            run_id = run_of(r, run)
        return page(request, "plots.html", run_id=run_id)

    # -- actions ------------------------------------------------------------------------------

    @app.post("/actions")
    async def action_form(request: Request) -> Response:
        """An HTML form's action: submitted through the control plane, answered within ~2 s,
        then a 303 back to the live page with the outcome as a flash message."""
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        run_id = (form.get("run_id") or "").strip()
        back = f"/runs/{quote(run_id, safe='')}" if run_id else "/"
        tool = (form.get("tool") or "").strip()
        try:
            args = arguments_from_form(tool, form)
            result = await run_in_threadpool(
                perform, config.db, tool, args, form.get("operator"), run_id=run_id or None
            )
            flash = {
                "kind": "ok" if result.status == "applied" else "warn",
                "text": result.message,
            }
        except ActionError as exc:
            flash = {"kind": "error", "text": f"refused: {exc}"}
        resp = RedirectResponse(back, status_code=303)
        resp.set_cookie(
            FLASH_COOKIE,
            quote(json.dumps({**flash, "text": flash["text"][:1500]})),
            httponly=True,
            samesite="strict",
            path="/",
            max_age=60,
        )
        return resp

    @app.post("/api/actions")
    async def api_action(request: Request) -> Response:
        """JSON ``{"tool", "arguments", "operator", "run_id"?}`` → the request seq and the
        session's answer (``status`` applied, rejected, or pending after ~2 s)."""
        try:
            body = await request.json()
        except ValueError:
            raise ActionError("the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise ActionError("the body must be a JSON object")
        tool = body.get("tool")
        if not isinstance(tool, str):
            raise ActionError("tool: expected a string")
        run_id = body.get("run_id")
        result = await run_in_threadpool(
            perform,
            config.db,
            tool,
            body.get("arguments"),
            body.get("operator"),
            run_id=run_id if isinstance(run_id, str) and run_id else None,
        )
        return JSONResponse(result.as_dict())

    # -- JSON API -----------------------------------------------------------------------------

    @app.get("/api/sessions")
    def api_sessions() -> dict[str, Any]:
        """Every run of the store, newest first (:func:`cfa.desk.reads.sessions`)."""
        with reader() as r:
            return {"sessions": reads.sessions(r)}

    @app.get("/api/runs/{run}/state")
    def api_state(run: str) -> Response:
        """The run's live state (:meth:`cfa.desk.SessionTail.state` plus ``live`` and
        ``requests``), as the event stream sends it."""
        with reader() as r:
            run_id = run_of(r, run)
        feed = feeds.get(run_id)
        _, state, text = feed.snapshot(5.0)
        if state is None:
            raise DeskError(f"run {run_id}: {feed.error or 'no state within 5 s'}")
        return Response(text, media_type="application/json")

    @app.get("/api/runs/{run}/traces")
    def api_traces(request: Request, run: str) -> dict[str, Any]:
        """Decision summaries, oldest first, with the filters of ``cfa traces``: ``market``,
        ``agent``, ``since``/``until`` (ISO or epoch s), ``outcome`` (repeat), ``limit``."""
        run_id, rows, total = find_traces(request, run)
        return {"run_id": run_id, "decisions": rows, "total": total}

    @app.get("/api/decisions/{seq}")
    def api_decision(seq: str) -> Response:
        """One decision as ``cfa traces show --json`` prints it."""
        d, related, followed = load_decision(seq)
        return Response(
            json.dumps(reads.decision_json(d, related, followed), default=str),
            media_type="application/json",
        )

    @app.get("/api/runs/{run}/pending")
    def api_pending(run: str) -> dict[str, Any]:
        """The run's approval requests still pending, oldest first."""
        with reader() as r:
            run_id = run_of(r, run)
            return {"run_id": run_id, "pending": reads.pending_of(r, run_id)}

    @app.get("/api/runs/{run}/risk")
    def api_risk(request: Request, run: str) -> dict[str, Any]:
        """The run's latest risk events, newest first (``market`` filters)."""
        market = (request.query_params.get("market") or "").strip() or None
        with reader() as r:
            run_id = run_of(r, run)
            return {
                "run_id": run_id,
                "events": reads.risk_events(r, run_id=run_id, market=market, limit=RISK_LIMIT),
            }

    @app.get("/api/runs/{run}/charts")
    def api_charts(run: str) -> dict[str, Any]:
        """Every market's charts of the run as data (:func:`cfa.reports.charts.run_charts`);
        decision markers link to ``/decisions/{seq}``. Replays the run so far."""
        from cfa.reports.charts import run_charts

        with reader() as r:
            run_id = run_of(r, run)
            return run_charts(r, run_id, link=lambda d: f"/decisions/{d.seq}")

    app.add_middleware(Guard, tokens=config.tokens, binding=config.binding)
    return app


def _store_name(db: str) -> str:
    """The store as shown on pages (a PostgreSQL URL without its password)."""
    from cfa.audit.chain import store_name

    try:
        return str(store_name(db))
    except Exception:  # a name for display only
        return "audit store"
