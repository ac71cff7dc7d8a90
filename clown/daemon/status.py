"""The daemon's status: supervisord's pid and uptime, the programs and their restarts."""

import time

import psutil

from clown import __version__


class DaemonStatus:
    def __init__(self, ctx):
        self.ctx = ctx

    def restart_counts(self) -> dict[str, int]:
        rows = self.ctx.store.execute("SELECT program, restarts FROM program_restarts").fetchall()
        return {row["program"]: row["restarts"] for row in rows}

    async def programs(self) -> list[dict]:
        """Every program supervisord runs, with its state and restart count."""
        restarts = self.restart_counts()
        infos = await self.ctx.workers.all()
        now = time.time()
        return [{
            "name": info["name"],
            "group": info["group"],
            "state": info["statename"],
            "pid": info["pid"] or None,
            "restarts": restarts.get(info["name"], 0),
            "uptime_secs": int(now - info["start"]) if info["statename"] == "RUNNING" and info["start"] else None,
        } for info in infos]

    async def status(self) -> dict:
        pid = await self.ctx.supervisor.call("getPID")
        uptime = int(time.time() - psutil.Process(pid).create_time())
        programs = await self.programs()
        profiles = self.ctx.store.execute("SELECT COUNT(*) FROM profiles").fetchone()[0]
        active_proxies = sum(1 for program in programs
                             if program["group"].startswith("proxy-") and program["state"] == "RUNNING")
        return {
            "status": "running",
            "pid": pid,
            "uptime_secs": uptime,
            "version": __version__,
            "profiles_count": profiles,
            "active_proxies": active_proxies,
            "programs": programs,
        }
