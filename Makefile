# Flashlayer: the two commands of the quick start are `make demo` and `make test`.
CARGO ?= cargo

.PHONY: test demo fmt-check clippy unit e2e e2e-real generate

# fmt, clippy, unit tests, then the end-to-end suites on the local cluster: kwok fake nodes, then
# the real node (root: containerd, runc, a bridge; images built without Docker).
test: fmt-check clippy unit e2e e2e-real

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
# images built without Docker), in a run dir of their own.
e2e-real:
	FLASHLAYER_RUN_DIR=$(HOME)/.cache/flashlayer/run-real e2e/run --real

# Regenerate the committed CRDs, chart CRD template, manifests/install.yaml and the Argo CD
# argocd-cm patch (from the health checks' Lua).
generate:
	eval "$$(e2e/cluster env)" && FLASHLAYER_UPDATE_GENERATED=1 $(CARGO) test -q -p flashlayer-operator --test generated --test argocd_health
