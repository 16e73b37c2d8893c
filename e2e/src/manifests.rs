//! YAML of the objects the scenarios apply: the example AVSOperators, and FlashRollups built
//! from a valid base (Discard settlement, Retain teardown) with the knobs the scenarios turn.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// manifests/examples/avs-operators.yaml: three operators labelled tier: gold (stakes 100, 100,
/// 50; capacity 4) and their BLS key Secrets.
pub fn example_avs_operators(root: &std::path::Path) -> String {
    let path = root.join("manifests/examples/avs-operators.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The example operators' names.
pub const EXAMPLE_OPERATORS: [&str; 3] = ["avs-gold-1", "avs-gold-2", "avs-gold-3"];

/// When the rollup's life ends.
#[derive(Clone, Debug)]
pub enum Life {
    /// `spec.ttl` (at least 1m, by validation).
    Ttl(String),
    /// `spec.expiresAt`, an absolute instant.
    ExpiresAt(Timestamp),
}

/// Where a Settle rollup settles.
#[derive(Clone, Debug)]
pub struct L1 {
    pub rpc_url: String,
    pub chain_id: u64,
    pub contract: String,
    /// Secret with the signer key under `privateKey`.
    pub signer_secret: String,
}

/// A FlashRollup to apply.
#[derive(Clone, Debug)]
pub struct Rollup {
    pub name: String,
    pub life: Life,
    pub min_operators: u32,
    pub quorum: u32,
    /// `matchLabels` of `verification.operatorSelector`.
    pub tier: String,
    pub chain_id: u64,
    /// `settlement.policy: Settle` to this L1; Discard when unset.
    pub settle: Option<L1>,
}

impl Rollup {
    /// A Discard rollup verified by 2 gold operators, living 10 minutes once Running.
    pub fn new(name: &str) -> Rollup {
        Rollup {
            name: name.to_owned(),
            life: Life::Ttl("10m".into()),
            min_operators: 2,
            quorum: 67,
            tier: "gold".into(),
            chain_id: 901337,
            settle: None,
        }
    }

    /// `settlement.policy: Settle` on `l1`, with 1 confirmation.
    pub fn settle(mut self, l1: &L1) -> Rollup {
        self.settle = Some(l1.clone());
        self
    }

    pub fn ttl(mut self, ttl: &str) -> Rollup {
        self.life = Life::Ttl(ttl.to_owned());
        self
    }

    /// `spec.expiresAt` = now + `life`, rounded up to the next whole second (RFC 3339 in the API
    /// has second precision).
    pub fn expires_in(mut self, life: Duration) -> Rollup {
        let at = Timestamp::now() + SignedDuration::try_from(life).unwrap_or(SignedDuration::ZERO);
        let secs = at.as_second() + i64::from(at.subsec_nanosecond() > 0);
        self.life = Life::ExpiresAt(Timestamp::from_second(secs).unwrap_or(at));
        self
    }

    pub fn min_operators(mut self, n: u32) -> Rollup {
        self.min_operators = n;
        self
    }

    pub fn tier(mut self, tier: &str) -> Rollup {
        self.tier = tier.to_owned();
        self
    }

    /// `spec.expiresAt`, when the life is absolute.
    pub fn expires_at(&self) -> Option<Timestamp> {
        match &self.life {
            Life::ExpiresAt(t) => Some(*t),
            Life::Ttl(_) => None,
        }
    }

    pub fn yaml(&self) -> String {
        let life = match &self.life {
            Life::Ttl(ttl) => format!("ttl: {ttl}"),
            Life::ExpiresAt(at) => format!("expiresAt: \"{}\"", at.strftime("%Y-%m-%dT%H:%M:%SZ")),
        };
        let settlement = match &self.settle {
            None => "policy: Discard".to_owned(),
            Some(l1) => format!(
                "policy: Settle\n    l1:\n      rpcUrl: {}\n      chainId: {}\n      contract: \"{}\"\n      signerSecretRef:\n        name: {}\n        key: privateKey\n    confirmations: 1",
                l1.rpc_url, l1.chain_id, l1.contract, l1.signer_secret
            ),
        };
        format!(
            r#"apiVersion: rollups.flashlayer.dev/v1alpha1
kind: FlashRollup
metadata:
  name: {name}
spec:
  {life}
  chain:
    chainId: {chain_id}
    blockTime: 500ms
    gasLimit: 30000000
    genesis:
      alloc:
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266":
          balance: "10000000000000000000000"
  sequencer:
    mode: Single
    storage: 1Gi
  verification:
    operatorSelector:
      matchLabels:
        tier: {tier}
    minOperators: {min}
    quorumStakePercent: {quorum}
  settlement:
    {settlement}
  teardown:
    policy: Retain
    volume: Delete
"#,
            name = self.name,
            chain_id = self.chain_id,
            tier = self.tier,
            min = self.min_operators,
            quorum = self.quorum,
        )
    }
}

/// A valid AVSOperator (the first example operator's public identity) under another name.
pub fn avs_operator(name: &str) -> String {
    format!(
        r#"apiVersion: rollups.flashlayer.dev/v1alpha1
kind: AVSOperator
metadata:
  name: {name}
  labels:
    tier: gold
spec:
  address: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
  blsPublicKey:
    g1: "0x28f2089ee5520f560e1a135eabfb180c71b4049c297e823dd4b0c876d5c968952d9d0f5e8fb6c006c4b99d085e0e514e3f8703cc9e88526a802dab4697927905"
    g2: "0x08940b39e0b420d5466ee40c7dda96c415a404eacbf1e3df76251e9a871067f727a7568bc01e1894ddd0245d541e047ba3dcf8e1b2d108bb9e1d487efef94b4c0f288a4f17214f40e2bb80e562d0d5201e3420e90479c63c9bb2c923b11daad7107c275a16e280f7599aa957ee8c41381045ebca66cadca965e0320afe8d3db5"
  blsKey:
    secretRef:
      name: {name}-bls
      key: bls.key
  stake: 100
  capacity: 4
"#
    )
}
