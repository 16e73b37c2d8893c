# Flashlayer: the two commands of the quick start are `make demo` and `make test`.
CARGO ?= cargo

.PHONY: test demo fmt-check clippy unit e2e e2e-real generate

# fmt, clippy, unit tests, then the end-to-end suite on the local cluster.
test: fmt-check clippy unit e2e

# A FlashRollup's whole life on the local cluster, printed live.
demo:
	e2e/demo

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit:
	eval "$$(e2e/cluster env)" && $(CARGO) test --workspace --locked

# The suite on kwok fake nodes.
e2e:
	e2e/run

# The real-pod scenarios on a cluster with a real kubelet node (containerd, runc, CNI bridge;
# images built without Docker), in a run dir of their own. Not yet part of `make test`.
e2e-real:
	FLASHLAYER_RUN_DIR=$(HOME)/.cache/flashlayer/run-real e2e/run --real

# Regenerate the committed CRDs, chart CRD template and manifests/install.yaml.
generate:
	eval "$$(e2e/cluster env)" && FLASHLAYER_UPDATE_GENERATED=1 $(CARGO) test -q -p flashlayer-operator --test generated
