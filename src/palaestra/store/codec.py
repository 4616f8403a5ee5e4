"""Conversion between ``palaestra.core`` episodes and the store's rows, and the JSON export format.

The rule that makes a round trip lossless: every field of ``Turn`` / ``Action`` / ``Step`` / ``Completion``
has a column or a key in the ``calls`` JSON, and nothing is derived on the way back except what the
core types derive themselves. Aggregates in the rows (token counts, ``invalid_action``, ``n_turns``) are
there for SQL queries and dashboards only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from palaestra.core import Action, Completion, Episode, Step, StoreError, Turn, Usage

# Compact separators: token-id lists are the bulk of a trajectory's bytes.
_SEPARATORS = (",", ":")
EXPORT_FORMAT = "palaestra.episode/1"


def dumps(value: Any, what: str) -> str:
    """JSON text of ``value``; a value JSON cannot hold raises ``StoreError`` naming ``what`` it was."""
    try:
        return json.dumps(value, separators=_SEPARATORS, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"cannot store {what}: {exc}. Stored values must be JSON types (str, int, float, bool, None, "
            "list, dict with str keys); convert the value (e.g. str() it) where it is produced."
        ) from exc


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _ints(text: str | None) -> tuple[int, ...] | None:
    value = _loads(text)
    return None if value is None else tuple(value)


def _floats(text: str | None) -> tuple[float, ...] | None:
    value = _loads(text)
    return None if value is None else tuple(float(v) for v in value)


# --------------------------------------------------------------------------- rows from episodes


def _call_dict(call: Completion, *, with_tokens: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "text": call.text,
        "model": call.model,
        "finish_reason": call.finish_reason,
        "prompt_tokens": call.usage.prompt_tokens,
        "completion_tokens": call.usage.completion_tokens,
        "latency_s": call.latency_s,
        "cached": call.cached,
    }
    if with_tokens:
        data["prompt_token_ids"] = None if call.prompt_token_ids is None else list(call.prompt_token_ids)
        data["completion_token_ids"] = None if call.completion_token_ids is None else list(call.completion_token_ids)
        data["logprobs"] = None if call.logprobs is None else list(call.logprobs)
    return data


def completion_to_dict(call: Completion) -> dict[str, Any]:
    """One model call as JSON values, token ids and log-probabilities included (the export formats' form)."""
    return _call_dict(call, with_tokens=True)


def completion_from_dict(data: dict[str, Any]) -> Completion:
    """The inverse of :func:`completion_to_dict`."""
    return _completion(data, data)


def _json_list(values: Sequence[Any] | None, what: str) -> str | None:
    return None if values is None else dumps(list(values), what)


def turn_row(episode_id: int, index: int, turn: Turn, seed: int) -> dict[str, Any]:
    """The ``turns`` row of one turn."""
    where = f"seed {seed} turn {index}"
    calls = turn.action.calls
    last = calls[-1] if calls else None
    usage = turn.action.usage
    return {
        "episode_id": episode_id,
        "index": index,
        "observation": turn.observation,
        "action_text": turn.action.text,
        "raw_output": turn.action.raw,
        "parsed": turn.action.parsed,
        "reward": float(turn.step.reward),
        "terminated": bool(turn.step.terminated),
        "truncated": bool(turn.step.truncated),
        "invalid_action": bool(turn.step.info.get("invalid_action")),
        "next_observation": turn.step.observation,
        "info": dumps(turn.step.info, f"{where} step info"),
        "prompt_token_ids": _json_list(last.prompt_token_ids if last else None, f"{where} prompt token ids"),
        "completion_token_ids": _json_list(
            last.completion_token_ids if last else None, f"{where} completion token ids"
        ),
        "logprobs": _json_list(last.logprobs if last else None, f"{where} logprobs"),
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "latency_s": float(sum(c.latency_s for c in calls)),
        "cached": bool(calls) and all(c.cached for c in calls),
        # The final call's token arrays live in the columns above, so its entry here omits them.
        "calls": dumps([_call_dict(c, with_tokens=i < len(calls) - 1) for i, c in enumerate(calls)], f"{where} calls")
        if calls
        else None,
        "agent": turn.agent,
        "round": turn.round,
        "meta": dumps(turn.action.meta, f"{where} action meta") if turn.action.meta else None,
    }


def episode_row(run_id: str, episode: Episode, attempts: int) -> dict[str, Any]:
    """The ``episodes`` row of an episode (without its id)."""
    usage = episode.usage
    return {
        "run_id": run_id,
        "seed": episode.seed,
        "status": episode.status,
        "error": episode.error,
        "attempts": attempts,
        "total_return": float(episode.total_return),
        "success": bool(episode.success),
        "terminated": bool(episode.terminated),
        "truncated": bool(episode.truncated),
        "n_turns": len(episode.turns),
        "invalid_actions": episode.invalid_actions,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "wall_s": float(episode.wall_s),
        "started_at": float(episode.started_at),
        "first_observation": episode.first_observation,
        "players": None if episode.players is None else dumps(episode.players, f"seed {episode.seed} players"),
        "metrics": dumps(episode.metrics, f"seed {episode.seed} metrics") if episode.metrics else None,
    }


# --------------------------------------------------------------------------- episodes from rows


def _completion(data: dict[str, Any], tokens: dict[str, Any]) -> Completion:
    return Completion(
        text=data["text"],
        model=data["model"],
        finish_reason=data["finish_reason"],
        usage=Usage(data["prompt_tokens"], data["completion_tokens"]),
        latency_s=data["latency_s"],
        prompt_token_ids=None if tokens["prompt_token_ids"] is None else tuple(tokens["prompt_token_ids"]),
        completion_token_ids=(
            None if tokens["completion_token_ids"] is None else tuple(tokens["completion_token_ids"])
        ),
        logprobs=None if tokens["logprobs"] is None else tuple(float(v) for v in tokens["logprobs"]),
        cached=data["cached"],
    )


def turn_from_row(row: Any) -> Turn:
    """Rebuild a ``Turn`` from its ``turns`` row."""
    calls: list[Completion] = []
    entries = _loads(row.calls) or []
    for i, entry in enumerate(entries):
        if i < len(entries) - 1:
            calls.append(_completion(entry, entry))
        else:
            last_tokens = {
                "prompt_token_ids": _loads(row.prompt_token_ids),
                "completion_token_ids": _loads(row.completion_token_ids),
                "logprobs": _loads(row.logprobs),
            }
            calls.append(_completion(entry, last_tokens))
    return Turn(
        observation=row.observation,
        action=Action(
            text=row.action_text,
            raw=row.raw_output,
            parsed=bool(row.parsed),
            calls=tuple(calls),
            meta=_loads(row.meta) or {},
        ),
        step=Step(
            observation=row.next_observation,
            reward=row.reward,
            terminated=bool(row.terminated),
            truncated=bool(row.truncated),
            info=json.loads(row.info),
        ),
        agent=row.agent,
        round=row.round,
    )


def episode_from_row(row: Any, env_id: str, turns: list[Turn]) -> Episode:
    """Rebuild an ``Episode`` from its ``episodes`` row and already rebuilt turns."""
    return Episode(
        env_id=env_id,
        seed=row.seed,
        status=row.status,
        turns=turns,
        first_observation=row.first_observation,
        total_return=row.total_return,
        success=bool(row.success),
        terminated=bool(row.terminated),
        truncated=bool(row.truncated),
        error=row.error,
        wall_s=row.wall_s,
        started_at=row.started_at,
        players=_loads(row.players),
        metrics=_loads(row.metrics) or {},
    )


# --------------------------------------------------------------------------- export


def export_record(lineage: dict[str, Any], episode_row_: Any, turns: list[Turn]) -> dict[str, Any]:
    """One line of ``Store.export_jsonl``: the run's lineage, the episode and every turn in full."""
    return {
        "format": EXPORT_FORMAT,
        "run": lineage,
        "episode": {
            "seed": episode_row_.seed,
            "status": episode_row_.status,
            "error": episode_row_.error,
            "attempts": episode_row_.attempts,
            "total_return": episode_row_.total_return,
            "success": bool(episode_row_.success),
            "terminated": bool(episode_row_.terminated),
            "truncated": bool(episode_row_.truncated),
            "n_turns": episode_row_.n_turns,
            "invalid_actions": episode_row_.invalid_actions,
            "prompt_tokens": episode_row_.prompt_tokens,
            "completion_tokens": episode_row_.completion_tokens,
            "wall_s": episode_row_.wall_s,
            "started_at": episode_row_.started_at,
            "first_observation": episode_row_.first_observation,
            "players": _loads(episode_row_.players),
            "metrics": _loads(episode_row_.metrics),
        },
        "turns": [
            {
                "index": i,
                "observation": t.observation,
                "action": t.action.text,
                "raw_output": t.action.raw,
                "parsed": t.action.parsed,
                "calls": [completion_to_dict(c) for c in t.action.calls],
                "reward": t.step.reward,
                "terminated": t.step.terminated,
                "truncated": t.step.truncated,
                "info": t.step.info,
                "next_observation": t.step.observation,
                "agent": t.agent,
                "round": t.round,
                "meta": t.action.meta,
            }
            for i, t in enumerate(turns)
        ],
    }
