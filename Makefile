# Flashlayer: the two commands of the quick start are `make demo` and `make test`.
CARGO ?= cargo

.PHONY: test fmt-check clippy unit generate

test: fmt-check clippy unit

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit:
	$(CARGO) test --workspace --locked

# Regenerate the committed CRDs, chart CRD templates and manifests from the Rust types.
generate:
	FLASHLAYER_UPDATE_GENERATED=1 $(CARGO) test -q -p flashlayer-operator --test generated
