"""Agent Data Protocol (ADP 1.2.0) files: export stored episodes as ADP trajectories and import them back.

One JSON object per line, one per episode::

    {"schema_version": "1.2.0", "id": "<run id>/<seed>",
     "content": [text_observation, message_action, text_observation, message_action, ..., text_observation],
     "details": {"env_id": ..., "seed": ..., "success": ..., "total_return": ..., "palaestra": {...}}}

``content`` is plain ADP, for any ADP reader: per turn the observation the agent saw
(``text_observation``, source ``environment``) and its reply (``message_action``: the model's full reply when
the agent kept it, else the action text; ``reward`` is the environment's reward for the turn), then the last
observation. ADP's models reject unknown keys on content items (``extra="forbid"``), so every palaestra
extension lives under ``details["palaestra"]`` (see ``docs/data.md`` for the full mapping): the run's lineage
(environment spec, agent, model, weights hash, package version, config with seeds...), the episode's status,
flags, wall time, players and metrics, the reward source, and per turn the acting player and round, the
action text and raw reply, every model call (text, tokens and latency, exact token ids and log-probabilities),
the step's info and flags, and the action's meta (a team's transcript).

``import_adp`` reads such a file back into a store: trajectories with the palaestra extension become new runs
(one per original run) with identical episodes, so export -> import -> export gives the same records except
for run ids. Plain ADP trajectories (written by other tools) become text-only episodes of one new run of the
environment given with ``env_id``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from palaestra.core.errors import SpecError, StoreError
from palaestra.core.types import Action, EnvSpec, Episode, Step, Turn
from palaestra.store import RunRecord, Store
from palaestra.store.codec import completion_from_dict, completion_to_dict

ADP_VERSION = "1.2.0"
# The schema versions whose files this reader accepts (ADP keeps 1.x backward compatible).
READABLE_VERSIONS = ("1.0.0", "1.1.0", "1.2.0")
EXTENSION = "palaestra.adp/1"  # details["palaestra"]["format"]
IMPORTED_AGENT = "imported"  # agent spec of a run made from plain ADP trajectories
_LINEAGE_KEYS = ("status", "created_at", "finished_at", "package_version", "git_commit")


# --------------------------------------------------------------------------- export


def _observation(text: str) -> dict[str, Any]:
    return {"class_": "text_observation", "content": text, "source": "environment"}


def _reply(turn: Turn) -> str:
    return turn.action.raw if turn.action.raw is not None else turn.action.text


def run_lineage(run: RunRecord) -> dict[str, Any]:
    """The lineage exported with a run's episodes. For a run made by ``import_adp`` it is the original run's
    (when it was made, by which package version, its status and config), under this run's id."""
    lineage = run.to_dict()
    config = dict(lineage["config"])
    imported = config.get("imported")
    if isinstance(imported, dict) and isinstance(imported.get("lineage"), dict):
        lineage.update({k: imported["lineage"][k] for k in _LINEAGE_KEYS if k in imported["lineage"]})
        del config["imported"]
        if "previous" in imported:
            config["imported"] = imported["previous"]
    lineage["config"] = config
    return lineage


def episode_record(lineage: dict[str, Any], episode: Episode) -> dict[str, Any]:
    """The ADP trajectory of one episode, with the palaestra extension in ``details["palaestra"]``."""
    content: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, turn in enumerate(episode.turns):
        content.append(_observation(turn.observation))
        content.append({"class_": "message_action", "content": _reply(turn), "reward": float(turn.step.reward)})
        entry: dict[str, Any] = {
            "agent": turn.agent,
            "round": turn.round,
            "action": turn.action.text,
            "raw": turn.action.raw,
            "parsed": turn.action.parsed,
            "calls": [completion_to_dict(c) for c in turn.action.calls],
            "terminated": turn.step.terminated,
            "truncated": turn.step.truncated,
            "info": turn.step.info,
            "meta": turn.action.meta,
        }
        following = episode.turns[i + 1].observation if i + 1 < len(episode.turns) else turn.step.observation
        if turn.step.observation != following:  # multi-agent: the next content observation is another player's
            entry["next_observation"] = turn.step.observation
        turns.append(entry)
    content.append(_observation(episode.turns[-1].step.observation if episode.turns else episode.first_observation))
    return {
        "schema_version": ADP_VERSION,
        "id": f"{lineage['id']}/{episode.seed}",
        "content": content,
        "details": {
            "env_id": episode.env_id,
            "seed": episode.seed,
            "success": episode.success,
            "total_return": episode.total_return,
            "palaestra": {
                "format": EXTENSION,
                "reward_source": "environment",
                "run": lineage,
                "episode": {
                    "seed": episode.seed,
                    "status": episode.status,
                    "error": episode.error,
                    "total_return": episode.total_return,
                    "success": episode.success,
                    "terminated": episode.terminated,
                    "truncated": episode.truncated,
                    "wall_s": episode.wall_s,
                    "started_at": episode.started_at,
                    "first_observation": episode.first_observation,
                    "players": episode.players,
                    "metrics": episode.metrics,
                },
                "turns": turns,
            },
        },
    }


def export_adp(store: Store, run_ids: Sequence[str], fp: TextIO) -> int:
    """Write every episode (ok and error, by seed) of the runs as ADP JSON lines; return how many."""
    count = 0
    for ref in run_ids:
        run = store.get_run(ref)
        lineage = run_lineage(run)
        for episode in store.episodes(run.id, with_turns=True):
            fp.write(json.dumps(episode_record(lineage, episode), ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
    return count


# --------------------------------------------------------------------------- reading


@dataclass
class _Group:
    """The episodes of one new run, in file order."""

    lineage: dict[str, Any] | None  # None: plain ADP trajectories
    episodes: list[Episode] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)


def _fail(where: str, what: str) -> SpecError:
    return SpecError(f"{where}: {what}")


def _text(item: dict[str, Any], where: str) -> str:
    for key in ("content", "text", "message"):  # 'text'/'message': older ADP examples
        value = item.get(key)
        if isinstance(value, str):
            return value
    raise _fail(where, f"a {item.get('class_')!r} item without a text 'content'")


def _kind(item: Any, where: str) -> str:
    if not isinstance(item, dict) or not isinstance(item.get("class_"), str):
        raise _fail(where, "every content item must be an object with a 'class_' (e.g. 'text_observation')")
    # Accept the CamelCase class names of older ADP examples (MessageAction -> message_action).
    return re.sub(r"(?<!^)(?=[A-Z])", "_", item["class_"]).lower()


def _episode_from_extension(record: dict[str, Any], ext: dict[str, Any], where: str) -> Episode:
    content = record["content"]
    data, turns = ext.get("episode"), ext.get("turns")
    env_id = ext.get("run", {}).get("env_id")
    if not isinstance(data, dict) or not isinstance(turns, list) or not isinstance(env_id, str):
        raise _fail(where, "details.palaestra lacks its 'run', 'episode' or 'turns'; was the file edited?")
    if len(content) != 2 * len(turns) + 1:
        raise _fail(
            where,
            f"{len(turns)} turns in details.palaestra but {len(content)} content items (expected "
            f"{2 * len(turns) + 1}); the content and the extension no longer match",
        )
    try:
        out = []
        for i, t in enumerate(turns):
            observation, reply = content[2 * i], content[2 * i + 1]
            calls = tuple(completion_from_dict(c) for c in t["calls"])
            out.append(
                Turn(
                    observation=_text(observation, where),
                    action=Action(text=t["action"], raw=t["raw"], parsed=t["parsed"], calls=calls, meta=t["meta"]),
                    step=Step(
                        observation=t.get("next_observation", _text(content[2 * i + 2], where)),
                        reward=float(reply.get("reward") or 0.0),
                        terminated=t["terminated"],
                        truncated=t["truncated"],
                        info=t["info"],
                    ),
                    agent=t["agent"],
                    round=t["round"],
                )
            )
        return Episode(
            env_id=env_id,
            seed=data["seed"],
            status=data["status"],
            turns=out,
            first_observation=data["first_observation"],
            total_return=data["total_return"],
            success=data["success"],
            terminated=data["terminated"],
            truncated=data["truncated"],
            error=data["error"],
            wall_s=data["wall_s"],
            started_at=data["started_at"],
            players=data["players"],
            metrics=data["metrics"] or {},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(
            where, f"details.palaestra is incomplete ({type(exc).__name__}: {exc}); was the file edited?"
        ) from exc


def _action_text(item: dict[str, Any], kind: str, where: str) -> str:
    if kind == "api_action":
        kwargs = json.dumps(item.get("kwargs") or {}, ensure_ascii=False, sort_keys=True)
        return f"{item.get('function', '')}({kwargs})"
    return _text(item, where)


def _observation_text(item: dict[str, Any], kind: str, where: str) -> str:
    if kind == "web_observation":
        return str(item.get("axtree") or item.get("html") or item.get("url") or "")
    if kind == "image_observation":
        return f"[image: {item.get('content', '')}]"
    return _text(item, where)


def _plain_episode(record: dict[str, Any], env_id: str, seed: int, where: str) -> Episode:
    """A text-only episode from a plain ADP trajectory: each action is a turn; the observations before it (joined
    by a blank line) are what it saw, those after it what came back; its reward is the action's, else that of
    the observations after it."""
    pending: list[str] = []
    turns: list[tuple[str, str, float | None]] = []  # observation, action, reward
    after: list[tuple[list[str], float | None]] = []  # per turn: observations and reward that followed
    for n, item in enumerate(record["content"]):
        at = f"{where} content[{n}]"
        kind = _kind(item, at)
        reward = item.get("reward")
        if reward is not None and (isinstance(reward, bool) or not isinstance(reward, int | float)):
            raise _fail(at, f"reward must be a number, not {reward!r}")
        if kind.endswith("_observation"):
            text = _observation_text(item, kind, at)
            pending.append(text)
            if after:
                seen, later = after[-1]
                seen.append(text)
                if later is None and reward is not None:
                    after[-1] = (seen, float(reward))
        elif kind.endswith("_action"):
            turns.append(("\n\n".join(pending), _action_text(item, kind, at), reward))
            after.append(([], None))
            pending = []
        else:
            raise _fail(at, f"unknown ADP class {item['class_']!r}")
    out = []
    for i, (observation, text, reward) in enumerate(turns):
        seen, later = after[i]
        value = float(reward) if reward is not None else later if later is not None else 0.0
        step = Step("\n\n".join(seen), value, terminated=i == len(turns) - 1)
        out.append(Turn(observation, Action(text=text), step))
    details = record.get("details")
    success = details.get("success") if isinstance(details, dict) else None
    return Episode(
        env_id=env_id,
        seed=seed,
        turns=out,
        first_observation=out[0].observation if out else "\n\n".join(pending),
        total_return=sum(t.step.reward for t in out),
        success=success if isinstance(success, bool) else False,
        terminated=bool(out),
    )


def read_adp(lines: Iterable[str], *, env_id: str | None = None, name: str = "<adp>") -> list[_Group]:
    """Parse ADP JSON lines into groups of episodes, one group per new run; nothing is written.

    Raises:
        SpecError: a line is not an ADP trajectory, or the file has plain trajectories and no ``env_id``.
    """
    groups: dict[str, _Group] = {}
    plain = _Group(None)
    seen: set[tuple[str, int]] = set()
    count = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{name} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _fail(
                where, f"not JSON ({exc.msg} at column {exc.colno}); an ADP file has one object per line"
            ) from None
        if not isinstance(record, dict) or not isinstance(record.get("content"), list):
            raise _fail(where, "not an ADP trajectory (an object with 'schema_version', 'id', 'content', 'details')")
        version = record.get("schema_version", ADP_VERSION)
        if version not in READABLE_VERSIONS:
            raise _fail(where, f"ADP schema_version {version!r}; this reader knows {', '.join(READABLE_VERSIONS)}")
        count += 1
        details = record.get("details")
        ext = details.get("palaestra") if isinstance(details, dict) else None
        trajectory_id = str(record.get("id", f"{name}:{number}"))
        if isinstance(ext, dict) and ext.get("format") == EXTENSION:
            lineage = ext.get("run")
            if not isinstance(lineage, dict) or not isinstance(lineage.get("id"), str):
                raise _fail(where, "details.palaestra.run (the run's lineage) is missing")
            episode = _episode_from_extension(record, ext, where)
            key = (lineage["id"], episode.seed)
            if key in seen:
                raise _fail(where, f"a second episode of run {lineage['id']} seed {episode.seed} in the file")
            seen.add(key)
            group = groups.setdefault(lineage["id"], _Group(lineage))
        else:
            if env_id is None:
                raise _fail(
                    where,
                    "a plain ADP trajectory (no palaestra extension): say which environment its episodes belong "
                    "to with --env ID (python: env_id=...), e.g. --env maze-fo-v0; see `palaestra envs`",
                )
            episode = _plain_episode(record, env_id, len(plain.episodes), where)
            group = plain
        group.episodes.append(episode)
        group.ids.append(trajectory_id)
    if count == 0:
        raise SpecError(f"{name} holds no ADP trajectories; nothing was imported")
    return [*groups.values(), *([plain] if plain.episodes else [])]


# --------------------------------------------------------------------------- import


def import_adp(store: Store, source: str | Path | TextIO, *, env_id: str | None = None) -> list[str]:
    """Read an ADP file into the store as new runs; return their ids (in the order met in the file).

    The whole file is read and checked before anything is written, so a bad file writes nothing.

    Args:
        source: a path, or a text file open for reading.
        env_id: the environment of plain ADP trajectories (those without the palaestra extension); required
            when the file has any.
    """
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            with path.open(encoding="utf-8") as fp:
                groups = read_adp(fp, env_id=env_id, name=str(path))
        except OSError as exc:
            raise SpecError(f"cannot read {path}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise SpecError(f"{path} is not UTF-8 text ({exc.reason}); ADP files are JSON lines") from exc
        name = path.name
    else:
        name = os.path.basename(getattr(source, "name", "")) or "<stream>"
        groups = read_adp(source, env_id=env_id, name=name)
    plain_spec = _plain_spec(env_id) if any(g.lineage is None for g in groups) else None
    run_ids = []
    for group in groups:
        run_ids.append(_write_group(store, group, name, plain_spec))
    return run_ids


def _plain_spec(env_id: str | None) -> EnvSpec:
    from palaestra.envs.registry import spec

    assert env_id is not None  # read_adp refused plain trajectories without it
    return spec(env_id)


def _write_group(store: Store, group: _Group, name: str, plain_spec: EnvSpec | None) -> str:
    seeds = [e.seed for e in group.episodes]
    if group.lineage is None:
        assert plain_spec is not None
        run_id = store.create_run(
            env_spec=plain_spec,
            agent_spec=IMPORTED_AGENT,
            model_spec=None,
            weights_hash=None,
            config={"seeds": seeds, "imported": {"format": "adp", "file": name, "ids": group.ids}},
            name=f"adp import of {name}",
        )
        status = "complete"
    else:
        lineage = group.lineage
        try:
            env_spec = EnvSpec.from_dict(lineage["env_spec"])
            config = dict(lineage["config"])
            previous = config.pop("imported", None)
            provenance: dict[str, Any] = {
                "format": "adp",
                "file": name,
                "from_run": lineage["id"],
                "lineage": {k: lineage[k] for k in _LINEAGE_KEYS},
            }
            if previous is not None:
                provenance["previous"] = previous
            run_id = store.create_run(
                env_spec=env_spec,
                agent_spec=lineage["agent_spec"],
                model_spec=lineage["model_spec"],
                weights_hash=lineage["weights_hash"],
                config={**config, "imported": provenance},
                parent_run_id=lineage["parent_run_id"],
                name=lineage["name"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SpecError(f"{name}: the lineage of run {lineage.get('id')} is incomplete ({exc})") from exc
        status = lineage["status"]
    for episode in group.episodes:
        try:
            store.record_episode(run_id, episode)
        except StoreError as exc:
            raise StoreError(f"importing {name} into run {run_id}: {exc}") from exc
    store.set_run_status(run_id, status)
    return run_id


def iter_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of an ADP file, one per non-empty line (for tests and scripts)."""
    with Path(path).open(encoding="utf-8") as fp:
        for line in fp:
            if line.strip():
                yield json.loads(line)
