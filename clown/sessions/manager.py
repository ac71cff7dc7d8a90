"""The agent session manager: create, run, watch, restart and delete agent sessions.

Life cycle (``status``), changed only by ``_set_status``:

    starting ──> running ──> idle / waiting / running (follows the agent's transcript)
        │            └─────> completed (exit 0) | failed (exit ≠ 0) | stopped (clown stopped it)
        └──────────────────> failed (could not start)
    any ──> starting          (a restart: refresh, access mode change)

``archived`` is a separate flag. Durable state is the ``agent_sessions`` row; the live
part (transcript tail, who is stopping what) is rebuilt from the rows when ``web``
restarts, so killing ``web`` ends no session. A periodic poll reads what the agent
appended to its transcript (→ ``chat_message``/``tool_call``/``tool_result`` on /ws) and,
every second, whether its process still runs.
"""

import asyncio
import dataclasses
import logging
import os
import time
import uuid
from collections import defaultdict
from typing import Callable

from tornado.ioloop import PeriodicCallback

from clown import clock
from clown.paths import ClientPathError, check_client_path
from clown.sessions import agents, sandbox, transcript, worktree
from clown.sessions.backends import BackendError, BackendUnavailable, ProcessState, StartSpec
from clown.sessions.backends.docker import DockerBackend, mounts_for
from clown.sessions.backends.pty import PtyBackend
from clown.sessions.backends.tmux import TmuxBackend
from clown.sessions.backends.zellij import ZellijBackend
from clown.web.base import ApiError

log = logging.getLogger(__name__)

LIVE = ("starting", "running", "idle", "waiting")
ENDED = ("completed", "failed", "stopped")
_FOLLOWING = ("running", "idle", "waiting")     # statuses the transcript may move between
TRANSITIONS = {
    "starting": {"running", "failed", "stopped"},
    "running": {"idle", "waiting", "completed", "failed", "stopped", "starting"},
    "idle": {"running", "waiting", "completed", "failed", "stopped", "starting"},
    "waiting": {"running", "idle", "completed", "failed", "stopped", "starting"},
    "completed": {"starting"},
    "failed": {"starting"},
    "stopped": {"starting"},
}
POLL_MS = 250
PROCESS_CHECK_EVERY = 4          # polls: the process is checked once a second
STOP_WAIT_SECS = 10.0
# An agent's TUI drops keys typed before it is ready, and says nowhere when it is: a message
# for an agent started less than this long ago waits until then.
SETTLE_SECS = 6.0
_NAME_ATTEMPTS = 8


def not_found(session_id: str) -> ApiError:
    return ApiError(404, f"Session with ID '{session_id}' not found", "SESSION_NOT_FOUND")


def backend_error(message: str) -> ApiError:
    return ApiError(500, message, "BACKEND_ERROR")


@dataclasses.dataclass
class Live:
    """What ``web`` keeps about a session whose agent runs (rebuilt after a restart of ``web``)."""

    id: str
    adapter: str
    tail: transcript.Tail | None = None
    codex_home: str | None = None
    started: float = dataclasses.field(default_factory=time.time)
    stopping: bool = False      # clown asked the agent to stop: its exit means "stopped"
    busy: bool = False          # a start/stop/restart is under way: the poll keeps off


def public(row) -> dict:
    """A row as ``GET /api/sessions`` shows it."""
    return {
        "id": row["id"], "name": row["name"], "backend": row["backend"], "agent": row["agent"],
        "profile": row["profile_alias"], "access_mode": row["access_mode"], "status": row["status"],
        "repo_path": row["repo_path"], "worktree_path": row["worktree_path"], "branch": row["branch"],
        "no_plan_mode": bool(row["no_plan_mode"]), "created_at": row["created_at"],
        "archived": bool(row["archived"]),
    }


class SessionManager:
    def __init__(self, ctx):
        self.ctx = ctx
        self.store = ctx.store
        self.backends = {"pty": PtyBackend(ctx), "tmux": TmuxBackend(ctx),
                         "zellij": ZellijBackend(ctx), "docker": DockerBackend(ctx)}
        self._live: dict[str, Live] = {}
        self._watchers: dict[str, set[Callable[[dict], None]]] = defaultdict(set)
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._poller: PeriodicCallback | None = None
        self._ticks = 0
        self._checking = False

    # -- start and stop of the manager -------------------------------------------------------

    async def start(self) -> None:
        """Reattach to the sessions the store lists as live, then start polling."""
        for row in self.store.execute(
                f"SELECT * FROM agent_sessions WHERE status IN ({','.join('?' * len(LIVE))})", LIVE).fetchall():
            live = Live(row["id"], await self._adapter(row["agent"]), started=0.0)
            if row["transcript_path"]:
                live.tail = transcript.Tail(row["transcript_path"], transcript.parser_for(live.adapter))
                await asyncio.to_thread(live.tail.prime)
            self._live[row["id"]] = live
        self.ctx.events.subscribe("terminals", self._on_terminal_event)
        self._poller = PeriodicCallback(self._poll, POLL_MS)
        self._poller.start()
        await self._check_processes()

    def close(self) -> None:
        if self._poller is not None:
            self._poller.stop()
        self.ctx.events.unsubscribe("terminals", self._on_terminal_event)

    # -- reading -------------------------------------------------------------------------------

    def row(self, session_id: str):
        """The session's row; raises ApiError 404 SESSION_NOT_FOUND."""
        row = self.store.execute("SELECT * FROM agent_sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            raise not_found(session_id)
        return row

    def exists(self, session_id: str) -> bool:
        return self.store.execute("SELECT 1 FROM agent_sessions WHERE id = ?", (session_id,)).fetchone() is not None

    def list(self, include_archived: bool) -> list[dict]:
        sql = "SELECT * FROM agent_sessions" + ("" if include_archived else " WHERE archived = 0")
        return [public(row) for row in self.store.execute(sql + " ORDER BY created_at, rowid").fetchall()]

    async def detail(self, session_id: str) -> dict:
        """The session with ``prompt`` and ``chat_history`` (read from the agent's transcript)."""
        row = self.row(session_id)
        adapter = await self._adapter(row["agent"])
        events = await asyncio.to_thread(transcript.read_events, row["transcript_path"], adapter)
        history = [entry for entry in map(transcript.history_entry, events) if entry is not None]
        if not history:
            history = [{"role": "user", "content": row["prompt"]}]
        return {**public(row), "prompt": row["prompt"], "chat_history": history}

    # -- /ws watchers --------------------------------------------------------------------------

    def watch(self, session_id: str, callback: Callable[[dict], None]) -> None:
        self._watchers[session_id].add(callback)

    def unwatch(self, session_id: str, callback: Callable[[dict], None]) -> None:
        watchers = self._watchers.get(session_id)
        if watchers is not None:
            watchers.discard(callback)
            if not watchers:
                del self._watchers[session_id]

    def _emit(self, session_id: str, message: dict) -> None:
        for callback in list(self._watchers.get(session_id, ())):
            try:
                callback(message)
            except Exception:
                log.exception("a /ws watcher of session %s failed", session_id)

    def _note(self, session_id: str, text: str) -> None:
        """A clown remark in the chat (``role: system``), on /ws only."""
        self._emit(session_id, {"type": "chat_message", "session_id": session_id,
                                "message": {"role": "system", "content": text}})

    def _set_status(self, session_id: str, status: str) -> bool:
        """The one place a status changes: checks the transition, stores it, tells the watchers."""
        row = self.store.execute("SELECT status FROM agent_sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None or row["status"] == status:
            return False
        if status not in TRANSITIONS[row["status"]]:
            log.debug("session %s: ignoring %s -> %s", session_id, row["status"], status)
            return False
        ended_at = clock.utc_iso() if status in ENDED else None
        self.store.execute("UPDATE agent_sessions SET status = ?, ended_at = ? WHERE id = ?",
                           (status, ended_at, session_id))
        self._emit(session_id, {"type": "session_status", "session_id": session_id, "status": status})
        self.ctx.events.publish("sessions", "session_status", {"session_id": session_id, "status": status})
        return True

    # -- create ----------------------------------------------------------------------------------

    async def create(self, request: dict) -> dict:
        """Validate, add the worktree, start the agent. Returns ``{"id","name","status":"starting"}``.

        Raises ApiError 400 INVALID_REQUEST (bad repo, agent, backend, profile) or 500
        BACKEND_ERROR (git or the backend failed; nothing is left behind then).
        """
        config = self.ctx.config
        backend_name = request.get("backend") or config.defaults.backend
        backend = self.backends.get(backend_name)
        if backend is None:
            raise ApiError(400, f"unknown backend '{backend_name}'")
        try:
            backend.check_available()
        except BackendUnavailable as exc:
            raise ApiError(400, str(exc))
        agent_id = request.get("agent") or config.defaults.agent
        adapter = await self._adapter(agent_id)
        try:
            repo = check_client_path(request["repo_path"], "repo_path", config.server.allowed_roots)
        except ClientPathError as exc:
            raise ApiError(400, str(exc))
        if not await worktree.is_work_tree(repo):
            raise ApiError(400, f"repo_path: {repo} is not a git work tree")
        if not await worktree.has_commits(repo):
            raise ApiError(400, f"repo_path: {repo} has no commit yet; a worktree needs one to start from")
        alias = self._profile_for(agent_id, request.get("profile"))

        name, path = await self._free_name(repo, request["prompt"])
        branch = worktree.BRANCH_PREFIX + name
        try:
            await worktree.add(repo, branch, path)
        except (worktree.GitError, TimeoutError) as exc:
            raise backend_error(str(exc))
        session_id = str(uuid.uuid4())
        conversation = str(uuid.uuid4()) if adapter == "claude" else None
        self.store.execute(
            "INSERT INTO agent_sessions (id, name, backend, agent, profile_alias, access_mode, status, repo_path,"
            " worktree_path, branch, prompt, no_plan_mode, archived, created_at, agent_conversation)"
            " VALUES (?, ?, ?, ?, ?, ?, 'starting', ?, ?, ?, ?, ?, 0, ?, ?)",
            (session_id, name, backend_name, agent_id, alias, request["access_mode"], repo, path, branch,
             request["prompt"], int(request["no_plan_mode"]), clock.utc_iso(), conversation))
        live = Live(session_id, adapter, busy=True)
        self._live[session_id] = live
        try:
            await self._launch(live, resume=False)
        except BaseException as exc:
            self._live.pop(session_id, None)
            self.store.execute("DELETE FROM agent_sessions WHERE id = ?", (session_id,))
            await worktree.remove(repo, path)
            await worktree.git("-C", repo, "branch", "-D", branch)
            if isinstance(exc, ApiError):
                raise
            if isinstance(exc, BackendError):
                raise backend_error(str(exc))
            if isinstance(exc, Exception):
                log.exception("session %s failed to start", name)
                raise backend_error(f"the agent could not be started: {exc}")
            raise
        finally:
            live.busy = False
        self.ctx.events.publish("sessions", "session_created", {"session_id": session_id, "name": name})
        # The response says "starting"; subscribers see "running" as the current status.
        asyncio.get_running_loop().call_soon(self._set_status, session_id, "running")
        return {"id": session_id, "name": name, "status": "starting"}

    async def _adapter(self, agent_id: str) -> str:
        """The agent's adapter (``claude``, ``codex``, ...). Raises ApiError 400 for an unknown agent."""
        catalog = getattr(self.ctx, "catalog", None)
        agent = await asyncio.to_thread(catalog.agent, agent_id) if catalog is not None else None
        if agent is None:
            raise ApiError(400, f"unknown agent '{agent_id}'")
        return agent.adapter or agent.id

    def _profile_for(self, agent_id: str, requested: str | None) -> str:
        if requested:
            row = self.store.execute("SELECT alias, agent_id FROM profiles WHERE alias = ?", (requested,)).fetchone()
            if row is None:
                raise ApiError(400, f"profile '{requested}' does not exist")
            if row["agent_id"] != agent_id:
                raise ApiError(400, f"profile '{requested}' runs agent '{row['agent_id']}', not '{agent_id}'")
            return row["alias"]
        # DESIGN: the agent's most recently used profile; none: 400 saying so.
        row = self.store.execute(
            "SELECT alias FROM profiles WHERE agent_id = ? AND last_used IS NOT NULL "
            "ORDER BY last_used DESC, created_at DESC LIMIT 1", (agent_id,)).fetchone()
        if row is not None:
            return row["alias"]
        if self.store.execute("SELECT 1 FROM profiles WHERE agent_id = ?", (agent_id,)).fetchone() is None:
            raise ApiError(400, f"no profile runs agent '{agent_id}': create one, or name one in 'profile'")
        raise ApiError(400, f"no profile of agent '{agent_id}' has been used yet: name one in 'profile'")

    async def _free_name(self, repo: str, prompt: str) -> tuple[str, str]:
        for _ in range(_NAME_ATTEMPTS):
            name = worktree.session_name(prompt)
            path = os.path.join(self.ctx.home.worktrees, name)
            taken = self.store.execute("SELECT 1 FROM agent_sessions WHERE name = ?", (name,)).fetchone()
            if not taken and not os.path.exists(path) and \
                    not await worktree.branch_exists(repo, worktree.BRANCH_PREFIX + name):
                return name, path
        raise backend_error("could not find a free session name")

    # -- running the agent ---------------------------------------------------------------------

    async def _launch(self, live: Live, resume: bool) -> None:
        """Start the agent of ``live`` (resuming its conversation when it can). Raises on failure."""
        row = self.row(live.id)
        adapter = live.adapter
        conversation = row["agent_conversation"]
        if resume and not agents.can_resume(adapter, conversation, bool(row["transcript_path"]) and
                                            os.path.exists(row["transcript_path"])):
            resume = False
        args = agents.session_args(adapter, conversation, row["prompt"], bool(row["no_plan_mode"]), resume)
        launch = await self.ctx.profiles.launch(row["profile_alias"], args, row["worktree_path"])
        env = {**launch.env, **agents.session_env(adapter)}
        argv = list(launch.argv)
        read_only = row["access_mode"] == "read-only"
        cwd = row["worktree_path"]
        spec = StartSpec(session_id=live.id, name=row["name"], profile_alias=row["profile_alias"], argv=argv,
                         env=env, secret_env={}, cwd=cwd)
        git_dir = await self._git_common_dir(cwd)
        if row["backend"] == "docker":
            spec.mounts = mounts_for(spec, read_only, launch.profile_home)
            if git_dir:
                spec.mounts.append((git_dir, read_only))
        elif read_only:
            spec.argv = sandbox.bwrap_argv(argv, worktree=cwd, repo=git_dir or row["repo_path"],
                                           writable=[launch.profile_home], clown_home=self.ctx.home.root,
                                           path_env=env.get("PATH"))
        if row["backend"] == "pty":
            spec.launch = dataclasses.replace(launch, argv=spec.argv, env=env, cwd=cwd)
        else:
            spec.secret_env = self._secret_values(launch.secret_env)
        if adapter == "claude":
            config_dir = env.get("CLAUDE_CONFIG_DIR") or os.path.join(env.get("HOME", "~"), ".claude")
            path = transcript.claude_transcript_path(config_dir, cwd, conversation)
            self.store.execute("UPDATE agent_sessions SET transcript_path = ? WHERE id = ?", (path, live.id))
            if live.tail is None or live.tail.path != path:
                live.tail = transcript.Tail(path, transcript.parser_for(adapter))
        elif adapter == "codex":
            live.codex_home = env.get("CODEX_HOME") or os.path.join(env.get("HOME", "~"), ".codex")
        live.started = time.time()
        live.stopping = False
        ref = await self.backends[row["backend"]].start(spec)
        self.store.execute("UPDATE agent_sessions SET backend_ref = ?, ended_at = NULL WHERE id = ?", (ref, live.id))

    def _secret_values(self, secret_env: dict) -> dict:
        """``{VAR: secret name}`` → ``{VAR: value}`` for backends that pass the env themselves."""
        values = {}
        for name, secret in secret_env.items():
            value = self.ctx.secrets.read(secret)
            if value is not None:
                values[name] = value
        return values

    async def _git_common_dir(self, cwd: str) -> str | None:
        result = await worktree.git("-C", cwd, "rev-parse", "--path-format=absolute", "--git-common-dir")
        return result.stdout.strip() if result.ok else None

    async def _stop_agent(self, row, live: Live | None) -> None:
        """Stop the agent and wait until it is gone. Raises BackendError."""
        if not row["backend_ref"]:
            return
        if live is not None:
            live.stopping = True
        backend = self.backends[row["backend"]]
        await backend.stop(row["backend_ref"])
        deadline = time.monotonic() + STOP_WAIT_SECS
        while (await backend.poll_state(row["backend_ref"])).running:
            if time.monotonic() > deadline:
                raise BackendError(f"the agent of session {row['name']} did not stop within {STOP_WAIT_SECS:g}s")
            await asyncio.sleep(0.1)

    async def _restart(self, session_id: str, why: str) -> None:
        """Stop the agent (if it runs) and start it again resuming its conversation."""
        row = self.row(session_id)
        live = self._live.get(session_id)
        if live is None:
            live = Live(session_id, await self._adapter(row["agent"]))
            if row["transcript_path"]:
                live.tail = transcript.Tail(row["transcript_path"], transcript.parser_for(live.adapter))
                await asyncio.to_thread(live.tail.prime)
            self._live[session_id] = live
        live.busy = True
        try:
            self._set_status(session_id, "starting")
            try:
                await self._stop_agent(row, live)
                await self._launch(live, resume=True)
            except Exception as exc:
                message = getattr(exc, "message", None) or str(exc)
                log.warning("session %s could not restart: %s", row["name"], message)
                self._set_status(session_id, "failed")
                self._live.pop(session_id, None)
                self._note(session_id, f"The agent could not be restarted: {message}")
                if isinstance(exc, ApiError):
                    raise
                raise backend_error(f"the agent could not be restarted: {message}")
            self._set_status(session_id, "running")
            self._note(session_id, why)
        finally:
            live.busy = False

    # -- operations ----------------------------------------------------------------------------

    async def send_message(self, session_id: str, content: str) -> None:
        """Type ``content`` into the agent, then Enter. Raises ApiError 404/400/500."""
        row = self.row(session_id)
        if row["status"] not in LIVE or not row["backend_ref"]:
            raise ApiError(400, f"session '{row['name']}' is not running (status {row['status']})")
        live = self._live.get(session_id)
        if live is not None and time.time() < live.started + SETTLE_SECS:
            await asyncio.sleep(live.started + SETTLE_SECS - time.time())
            row = self.row(session_id)
        try:
            await self.backends[row["backend"]].send_text(row["backend_ref"], content)
        except BackendError as exc:
            raise backend_error(str(exc))

    async def delete(self, session_id: str, force: bool) -> None:
        """Stop the agent, remove the worktree (the branch stays) and the row.

        Raises 409 CONFLICT when the worktree has uncommitted changes and not ``force``.
        """
        async with self._locks[session_id]:
            row = self.row(session_id)
            if not force:
                try:
                    dirty = await worktree.is_dirty(row["worktree_path"])
                except worktree.GitError as exc:
                    raise backend_error(str(exc))
                if dirty:
                    raise ApiError(409, f"session '{row['name']}' has uncommitted changes in its worktree "
                                        f"{row['worktree_path']}; delete with force=true to discard them", "CONFLICT")
            live = self._live.get(session_id)
            if live is not None:
                live.busy = True
            try:
                await self._stop_agent(row, live)
            except BackendError as exc:
                if not force:
                    if live is not None:
                        live.busy = False
                    raise backend_error(str(exc))
                log.warning("session %s: %s; deleting anyway (force)", row["name"], exc)
            if row["status"] in LIVE:
                self._set_status(session_id, "stopped")
            self._live.pop(session_id, None)
            await worktree.remove(row["repo_path"], row["worktree_path"])
            self.store.execute("DELETE FROM agent_sessions WHERE id = ?", (session_id,))
            self._watchers.pop(session_id, None)
        self._locks.pop(session_id, None)
        self.ctx.events.publish("sessions", "session_deleted", {"session_id": session_id})

    def set_archived(self, session_id: str, archived: bool) -> None:
        """Archive hides the session from the default list; the agent keeps running."""
        self.row(session_id)
        self.store.execute("UPDATE agent_sessions SET archived = ? WHERE id = ?", (int(archived), session_id))
        self.ctx.events.publish("sessions", "session_archived" if archived else "session_unarchived",
                                {"session_id": session_id})

    async def set_access_mode(self, session_id: str, mode: str) -> None:
        """Store the mode; a running agent is restarted in it, resuming its conversation."""
        async with self._locks[session_id]:
            row = self.row(session_id)
            if row["access_mode"] == mode:
                return
            self.store.execute("UPDATE agent_sessions SET access_mode = ? WHERE id = ?", (mode, session_id))
            if row["status"] in LIVE and row["backend_ref"]:
                await self._restart(session_id, f"Access mode changed to {mode}: the agent was restarted "
                                                f"in it, resuming the conversation.")
            self.ctx.events.publish("sessions", "session_access_mode", {"session_id": session_id, "access_mode": mode})

    async def refresh(self, session_id: str) -> None:
        """Restart the agent resuming its conversation (docker: pull the image, recreate the container)."""
        async with self._locks[session_id]:
            row = self.row(session_id)
            backend = self.backends[row["backend"]]
            if isinstance(backend, DockerBackend):
                try:
                    await backend.pull()
                except BackendError as exc:
                    raise backend_error(str(exc))
            await self._restart(session_id, "Session refreshed: the agent was restarted, resuming the conversation.")

    # -- watching the agents -------------------------------------------------------------------

    def _poll(self) -> None:
        self._ticks += 1
        for live in list(self._live.values()):
            try:
                self._read_transcript(live)
            except Exception:
                log.exception("session %s: reading the transcript failed", live.id)
        if self._ticks % PROCESS_CHECK_EVERY == 0 and not self._checking:
            asyncio.ensure_future(self._check_processes())

    def _read_transcript(self, live: Live) -> None:
        if live.tail is None:
            if live.codex_home and self._ticks % PROCESS_CHECK_EVERY == 0:
                self._find_rollout(live)
            if live.tail is None:
                return
        status = None
        for event in live.tail.read():
            if event["kind"] == "status":
                status = event["status"]
                continue
            message = transcript.ws_message(live.id, event)
            if message is not None:
                self._emit(live.id, message)
        if status and not live.busy:
            row = self.store.execute("SELECT status FROM agent_sessions WHERE id = ?", (live.id,)).fetchone()
            if row is not None and row["status"] in _FOLLOWING:
                self._set_status(live.id, status)

    def _find_rollout(self, live: Live) -> None:
        row = self.store.execute("SELECT worktree_path FROM agent_sessions WHERE id = ?", (live.id,)).fetchone()
        if row is None:
            return
        found = transcript.find_codex_rollout(live.codex_home, row["worktree_path"], live.started)
        if found:
            path, conversation = found
            self.store.execute("UPDATE agent_sessions SET transcript_path = ?, agent_conversation = ? WHERE id = ?",
                               (path, conversation or None, live.id))
            live.tail = transcript.Tail(path, transcript.parser_for(live.adapter))

    def _on_terminal_event(self, message: dict) -> None:
        if message.get("event") == "state_changed" and not self._checking:
            asyncio.ensure_future(self._check_processes())

    async def _check_processes(self) -> None:
        """Record the end of every agent whose process is gone."""
        self._checking = True
        try:
            for live in list(self._live.values()):
                if live.busy:
                    continue
                row = self.store.execute("SELECT * FROM agent_sessions WHERE id = ?", (live.id,)).fetchone()
                if row is None or row["status"] not in LIVE or not row["backend_ref"]:
                    continue
                try:
                    state = await self.backends[row["backend"]].poll_state(row["backend_ref"])
                except BackendError as exc:
                    log.warning("session %s: %s", row["name"], exc)
                    continue
                if not state.running and not live.busy:
                    self._ended(live, state)
        finally:
            self._checking = False

    def _ended(self, live: Live, state: ProcessState) -> None:
        try:
            self._read_transcript(live)  # the agent's last words
        except Exception:
            log.exception("session %s: reading the transcript failed", live.id)
        if live.stopping:
            status = "stopped"
        elif state.exit_code == 0:
            status = "completed"
        elif state.exit_code is None and state.reason:
            status = "stopped"
        else:
            status = "failed"
        self._live.pop(live.id, None)
        self._set_status(live.id, status)
