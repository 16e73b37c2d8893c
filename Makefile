# Flashlayer: the two commands of the quick start are `make demo` and `make test`.
CARGO ?= cargo

.PHONY: test demo fmt-check clippy unit e2e generate

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

# The suite on kwok fake nodes, then the real-pod scenarios on a cluster with a real kubelet node
# (containerd, runc, CNI bridge; images built without Docker), each in its own run dir.
e2e:
	e2e/run
	FLASHLAYER_RUN_DIR=$(HOME)/.cache/flashlayer/run-real e2e/run --real

# Regenerate the committed CRDs, chart CRD template and manifests/install.yaml.
generate:
	eval "$$(e2e/cluster env)" && FLASHLAYER_UPDATE_GENERATED=1 $(CARGO) test -q -p flashlayer-operator --test generated
