"""A pool of models by spec, so that everything in one evaluation shares one instance per model.

Environments whose partner is a model (the oracle of 20 Questions, the buyer of Car Dealer) name it by spec
string. Building a model per episode would reload the weights every time and split the local model's
batches; the runner therefore gives every environment the evaluation's pool, and the environment asks it
for its partner. When the partner's spec is the agent's own model, both share the one instance and their
requests land in the same batches.
"""

from __future__ import annotations

from typing import Any

from palaestra.models.base import Model


class ModelPool:
    """Models by spec string: ``get(spec)`` builds a model the first time and returns the same one after.

    Models handed in with ``add`` are shared, not owned: ``close()`` closes only the models the pool built.
    """

    def __init__(self, shared: Model | None = None, **options: Any) -> None:
        """``shared``: a model to hand out under its spec (an evaluation's agent model), never closed here;
        ``options`` go to ``make_model`` for the models the pool builds."""
        self._options = options
        self._models: dict[str, Model] = {}
        self._owned: list[Model] = []
        if shared is not None:
            self.add(shared)

    def add(self, model: Model) -> None:
        """Share an existing model under its own ``spec`` (the pool will not close it)."""
        self._models.setdefault(model.spec, model)

    def get(self, spec: str) -> Model:
        """The pool's model for ``spec``, built with ``palaestra.models.make_model`` on first use."""
        spec = spec.strip()
        if spec not in self._models:
            from palaestra.models.spec import make_model

            model = make_model(spec, **self._options)
            self._models[spec] = model
            self._owned.append(model)
        return self._models[spec]

    def shared_models(self) -> list[Model]:
        """Every model in the pool (built or added)."""
        return list(self._models.values())

    def __contains__(self, spec: str) -> bool:
        return spec.strip() in self._models

    async def close(self) -> None:
        """Close the models this pool built; safe to call twice."""
        owned, self._owned = self._owned, []
        for model in owned:
            self._models = {k: m for k, m in self._models.items() if m is not model}
            await model.close()
