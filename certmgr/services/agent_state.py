"""The agent's home: which GDS it talks to (and the GDS certificate it pinned), and each enrolled application.

An agent home has no CA, no CA key and no database of the GDS side: it is one small JSON file, written
atomically, beside nothing secret (the private keys live only in the applications' stores).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pki

from ..errors import InputError
from ..home import HOME_MODE, Home

STATE_NAME = "agent.json"


@dataclass
class AgentApp:
    app_uri: str
    store: str
    layout: str
    deploy_hook: str | None = None
    token_file: str | None = None  # read again while the first request waits for approval
    key_size: int = 2048
    app_id: str | None = None  # the GDS's ApplicationId (NodeId text)
    request_id: str | None = None  # the open request (NodeId text), None when none waits
    pending_key: str | None = None  # the key of the open request, in the store's staging folder
    thumbprint: str | None = None  # the installed certificate
    not_after: str | None = None
    last_run: str | None = None
    last_renewal: str | None = None
    last_trust_list: str | None = None
    crl_number: int | None = None
    last_result: str | None = None
    hook_failed: bool = False  # the deploy hook of the installed certificate failed: run again at the next run


@dataclass
class AgentState:
    gds: str | None = None
    gds_pin: str | None = None  # the GDS certificate pinned at first contact (--accept-gds)
    apps: list[AgentApp] = field(default_factory=list)

    def app(self, app_uri: str) -> AgentApp | None:
        return next((a for a in self.apps if a.app_uri == app_uri), None)


def agent_dir(home: Home) -> Path:
    return home.root / "agent"


def refuse_ca_home(home: Home) -> None:
    """An agent home must not be a CA home: the point is a host without the CA key."""
    if home.config_path.exists() or (home.root / "ca").exists() or (home.root / "certmgr.db").exists():
        raise InputError(f"{home.root} is a certmgr CA home; an agent keeps its own home without the CA",
                         "pass another --home (or CERTMGR_HOME) for the agent, e.g. --home /var/lib/certmgr-agent")


def load_state(home: Home) -> AgentState:
    path = agent_dir(home) / STATE_NAME
    if not path.exists():
        return AgentState()
    try:
        raw = json.loads(path.read_text())
        return AgentState(raw.get("gds"), raw.get("gds_pin"), [AgentApp(**a) for a in raw.get("apps", [])])
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path} is not an agent state file ({exc})", "restore it or enrol again into a new --home") from None


def save_state(home: Home, state: AgentState) -> None:
    folder = agent_dir(home)
    for path in (home.root, folder):
        if not path.is_dir():
            path.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
    data = json.dumps({"gds": state.gds, "gds_pin": state.gds_pin, "apps": [asdict(a) for a in state.apps]}, indent=2)
    pki.atomic_write(folder / STATE_NAME, data.encode(), 0o600, folder)
    os.chmod(folder, HOME_MODE)
