//! A simulated rota KV store with concurrent clients, for tests: every operation
//! takes effect at one instant between its call and its return, so every history
//! it records is linearizable by construction.

use std::collections::{BTreeMap, HashMap};

use rota_core::rng::Rng;

use crate::history::{History, Input, Operation, Output};

#[derive(Debug, Clone)]
pub(crate) struct SimConfig {
    pub clients: u64,
    pub ops_per_client: usize,
    pub keys: u64,
    /// How often an answer is lost, or a request abandoned before it applied
    /// (it may still apply later, or never).
    pub pending_per_mille: u64,
    /// Write values from a set of three instead of unique ones, so that a value
    /// seen twice may come from different writes.
    pub few_values: bool,
    pub seed: u64,
}

struct InFlight {
    index: usize,
    input: Input,
    output: Option<Output>,
}

#[derive(Default)]
struct Client {
    done: usize,
    current: Option<InFlight>,
    /// The last revision this client saw per key, to aim CAS at.
    seen: HashMap<String, u64>,
}

#[derive(Default)]
struct Store {
    index: u64,
    kv: BTreeMap<String, (String, u64)>,
}

impl Store {
    /// Apply like rota's state machine: every write takes the next log index.
    fn apply(&mut self, input: &Input) -> Output {
        match input {
            Input::Get { key } => match self.kv.get(key) {
                Some((value, mod_revision)) => Output::Found {
                    value: value.clone(),
                    mod_revision: *mod_revision,
                },
                None => Output::NotFound,
            },
            Input::Put { key, value } => {
                self.index += 1;
                self.kv.insert(key.clone(), (value.clone(), self.index));
                Output::Put {
                    revision: self.index,
                }
            }
            Input::Delete { key } => {
                self.index += 1;
                Output::Deleted {
                    deleted: self.kv.remove(key).is_some(),
                    revision: self.index,
                }
            }
            Input::Cas {
                key,
                expected_revision,
                value,
            } => {
                self.index += 1;
                let current = self.kv.get(key).map_or(0, |(_, rev)| *rev);
                if current != *expected_revision {
                    return Output::Mismatch { current };
                }
                self.kv.insert(key.clone(), (value.clone(), self.index));
                Output::CasOk {
                    revision: self.index,
                }
            }
        }
    }
}

/// Run `config.clients` clients against one simulated store, interleaving their
/// calls, linearization points and returns at random.
pub(crate) fn simulate(config: &SimConfig) -> History {
    let mut rng = Rng::new(config.seed);
    let mut store = Store::default();
    let mut clients: Vec<Client> = (0..config.clients).map(|_| Client::default()).collect();
    let mut abandoned: Vec<InFlight> = Vec::new();
    let mut ops: Vec<Operation> = Vec::new();
    let mut now = 0u64;
    loop {
        let active = clients
            .iter()
            .any(|c| c.current.is_some() || c.done < config.ops_per_client);
        if !active && abandoned.is_empty() {
            break;
        }
        now += 1;
        let pick = rng.below(config.clients + 1);
        let Some(client) = usize::try_from(pick)
            .ok()
            .and_then(|pick| clients.get_mut(pick))
        else {
            // A request whose client gave up on it reaches the store late, or never.
            if !abandoned.is_empty() {
                let late = abandoned.swap_remove(rng.below(abandoned.len() as u64) as usize);
                if chance(&mut rng, 500) {
                    store.apply(&late.input);
                }
            }
            continue;
        };
        match client.current.take() {
            None if client.done < config.ops_per_client => {
                let input = new_input(&mut rng, client, pick, config);
                ops.push(Operation {
                    client: pick,
                    call: now,
                    ret: None,
                    input: input.clone(),
                    output: None,
                });
                client.current = Some(InFlight {
                    index: ops.len() - 1,
                    input,
                    output: None,
                });
            }
            None => {}
            Some(flight) if flight.output.is_none() => {
                if chance(&mut rng, config.pending_per_mille) {
                    abandoned.push(flight);
                    client.done += 1;
                } else {
                    let output = store.apply(&flight.input);
                    client.current = Some(InFlight {
                        output: Some(output),
                        ..flight
                    });
                }
            }
            Some(flight) => {
                client.done += 1;
                if chance(&mut rng, config.pending_per_mille) {
                    continue;
                }
                let Some(output) = flight.output else {
                    continue;
                };
                if let Some(revision) = output.observed_revision() {
                    client.seen.insert(flight.input.key().to_string(), revision);
                }
                if let Some(op) = ops.get_mut(flight.index) {
                    op.ret = Some(now);
                    op.output = Some(output);
                }
            }
        }
    }
    History::new(ops)
}

/// True `per_mille` times in a thousand.
fn chance(rng: &mut Rng, per_mille: u64) -> bool {
    rng.below(1000) < per_mille
}

fn new_input(rng: &mut Rng, client: &Client, id: u64, config: &SimConfig) -> Input {
    let key = format!("k{}", rng.below(config.keys));
    let value = if config.few_values {
        ["a", "b", "c"][rng.below(3) as usize].to_string()
    } else {
        // Unique values, so that a corrupted read has a known effect.
        format!("c{id}.{}", client.done)
    };
    match rng.below(20) {
        0..=6 => Input::Put { key, value },
        7..=13 => Input::Get { key },
        14..=15 => Input::Delete { key },
        _ => {
            let seen = client.seen.get(&key).copied().unwrap_or(0);
            let expected_revision = match rng.below(4) {
                0 => 0,
                1 => seen + 1,
                _ => seen,
            };
            Input::Cas {
                key,
                expected_revision,
                value,
            }
        }
    }
}
