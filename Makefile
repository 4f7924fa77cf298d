# r1sft: the front door. `make help` lists the targets.
#   make demo                         the whole pipeline on a tiny model, CPU, from nothing
#   make test                         the test suite (what CI runs)
#   make recipe MODEL=qwen3-8b METHOD=lora GPUS=8   render a LLaMA-Factory recipe for your GPUs
#   make train RECIPE=recipes/qwen3-8b/lora_sft.yaml   then   make merge RECIPE=recipes/qwen3-8b/lora_merge.yaml

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
R1SFT := $(BIN)/r1sft
export PATH := $(CURDIR)/$(BIN):$(PATH)
# The torch trio LLaMA-Factory 0.9.5 works with (it imports torchaudio at start-up: a mismatched one kills every
# command). GPU boxes that already have a CUDA torch: `make setup TORCH=` keeps it.
TORCH ?= torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0
STAMP := $(VENV)/.r1sft-installed
# The bench's TRL peer arms need newer datasets/transformers than LLaMA-Factory 0.9.5 allows: their own venv.
PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.r1sft-peers-installed
PEERS_REQUIREMENTS := bench/requirements-peers.txt

MODEL ?= tiny-qwen3
METHOD ?= lora
GPUS ?=
NODES ?=
GPU_MEM ?=
CUTOFF ?=
GLOBAL_BATCH ?=
PACKING ?=
SP ?=
DEEPSPEED ?=
DATASET ?=
THINK ?=
TEMPLATE ?=
MODEL_PATH ?=
SET ?=
RECIPE ?= recipes/tiny-qwen3/lora_sft.yaml
# `make recipe MODEL=qwen3-8b learning_rate=2e-5 num_train_epochs=5`: command-line variables that are not r1sft's own
# are passed on as recipe keys (--set key=value).
OWN_VARS := MODEL METHOD TEMPLATE GPUS NODES GPU_MEM CUTOFF GLOBAL_BATCH PACKING DEEPSPEED DATASET THINK SET RECIPE TORCH PYTHON SP \
  SOURCE INPUT OUTPUT ARGS MODEL_PATH DATA EVAL_ARGS
# Their names come from `origin`, not from splitting MAKEOVERRIDES on spaces: values keep their spaces, and r1sft's
# own variables (DATASET="a, b", SET="k=v k2=v2") never leak in.
EXTRA_VARS := $(sort $(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $(v))),$(v))))
EXTRA_VARS := $(filter-out $(OWN_VARS) MAKEFLAGS MAKEOVERRIDES -*,$(EXTRA_VARS))
# One shell word, whatever the text holds: 'it'\''s' for it's.
quote = '$(subst ','\'',$(1))'
# PACKING=1/yes/true/on in any case (make has no lower-case function: these are the letters the words use).
lower = $(subst A,a,$(subst E,e,$(subst F,f,$(subst L,l,$(subst N,n,$(subst O,o,$(subst R,r,$(subst S,s,$(subst T,t,$(subst U,u,$(subst Y,y,$(1))))))))))))
PACKING_ON := $(filter 1 yes true on,$(call lower,$(strip $(PACKING))))
PACKING_BAD := $(if $(PACKING_ON)$(filter 0 no false off,$(call lower,$(strip $(PACKING)))),,$(strip $(PACKING)))

.PHONY: help setup peers demo test lint tiny-models demo-data data recipe recipes check train merge learn eval bench bench-convert clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

setup: $(STAMP) ## create .venv with the pinned stack (seconds when already done)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	if [ -n "$(TORCH)" ]; then $(BIN)/python -m pip install -q $(TORCH); fi
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

peers: $(PEERS_STAMP) ## create .venv-peers: TRL's current release for make bench's peer arms (~30 s)

# TRL's stack resolved against the same TORCH pin, which .venv's own torch satisfies: bench/link_torch.py puts
# .venv's torch stack (and nothing else of .venv) on the peer venv's path, as a second copy is several GB (more than
# CI's disk holds). Made afresh each time: a stale peer venv would shadow the links with its own torch.
$(PEERS_STAMP): $(PEERS_REQUIREMENTS) bench/link_torch.py $(STAMP)
	rm -rf $(PEERS_VENV)
	$(PYTHON) -m venv $(PEERS_VENV)
	$(BIN)/python bench/link_torch.py $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install -q $(TORCH) -r $(PEERS_REQUIREMENTS)
	touch $@

tiny-models: setup ## build the three tiny offline models (cached under .cache/tiny-models)
	for preset in tiny-qwen2.5 tiny-qwen3 tiny-llama3.2; do $(R1SFT) tiny-model --preset $$preset; done

demo-data: setup ## convert the bundled samples into data/r1sft_sample.jsonl
	$(R1SFT) convert samples

data: setup ## convert a dataset: make data SOURCE=bespoke-stratos INPUT=... OUTPUT=data/stratos.jsonl [ARGS="--dedupe ..."]
	$(R1SFT) convert "$(SOURCE)" --input "$(INPUT)" --output "$(OUTPUT)" $(ARGS)

recipe: setup ## render recipes/<MODEL>/<METHOD>_sft.yaml (+ _merge.yaml); see README for the variables
	$(if $(PACKING_BAD),$(error PACKING=$(PACKING_BAD): expected 1, yes, true or on (or 0, no, false, off)))
	$(R1SFT) recipe $(call quote,$(MODEL)) --method $(call quote,$(METHOD)) \
	  $(if $(DATASET),--dataset $(call quote,$(DATASET))) $(if $(GPUS),--gpus $(call quote,$(GPUS))) \
	  $(if $(NODES),--nodes $(call quote,$(NODES))) $(if $(GPU_MEM),--gpu-mem $(call quote,$(GPU_MEM))) \
	  $(if $(CUTOFF),--cutoff $(call quote,$(CUTOFF))) $(if $(GLOBAL_BATCH),--global-batch $(call quote,$(GLOBAL_BATCH))) \
	  $(if $(DEEPSPEED),--deepspeed $(call quote,$(DEEPSPEED))) $(if $(THINK),--think $(call quote,$(THINK))) \
	  $(if $(TEMPLATE),--template $(call quote,$(TEMPLATE))) $(if $(MODEL_PATH),--model-path $(call quote,$(MODEL_PATH))) \
	  $(if $(PACKING_ON),--packing) $(if $(SP),--sequence-parallel $(call quote,$(SP))) \
	  $(foreach kv,$(SET),--set $(call quote,$(kv))) \
	  $(foreach v,$(EXTRA_VARS),--set $(call quote,$(v)=$($(v))))

recipes: setup ## re-render the committed headline recipes
	$(R1SFT) recipe --refresh-committed

check: setup ## check a recipe with LLaMA-Factory's parser and r1sft's rules: make check RECIPE=...
	$(R1SFT) check "$(RECIPE)"

train: setup ## train a recipe: make train RECIPE=recipes/qwen3-8b/lora_sft.yaml
	bash run_sft.sh "$(RECIPE)"

merge: setup ## merge an adapter and verify it: make merge RECIPE=recipes/qwen3-8b/lora_merge.yaml
	$(R1SFT) merge "$(patsubst %_sft.yaml,%_merge.yaml,$(RECIPE))"

demo: setup ## the whole pipeline on a tiny model and the bundled sample, on CPU
	$(R1SFT) demo

# peers: the CPU smoke run of the TRL peer arms (tests/test_bench.py) needs .venv-peers, and must not skip here.
test: setup peers ## run the test suite
	R1SFT_REQUIRE_PEERS=1 $(BIN)/python -m pytest -q

lint: setup ## ruff
	$(BIN)/ruff check .

learn: setup ## train a tiny model on a synthetic reasoning task and score it (well_formed, accuracy)
	$(R1SFT) learn

eval: setup ## evaluate a model: make eval MODEL_PATH=saves/... DATA=problems.jsonl
	$(R1SFT) eval "$(MODEL_PATH)" --data "$(DATA)" $(EVAL_ARGS)

bench: setup peers ## GPU benchmark: LLaMA-Factory example config and TRL vs r1sft's planned recipe
	$(BIN)/python bench/bench_train.py

bench-convert: setup ## converter throughput vs the datasets.map path
	$(BIN)/python bench/bench_convert.py

clean: ## remove generated outputs (keeps .venv and the tiny models)
	rm -rf saves recipes/tiny-* .cache/tokenized
