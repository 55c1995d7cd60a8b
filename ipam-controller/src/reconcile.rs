//! The controller's block reconciliation: every node holds at least one affine block of
//! each enabled pool that selects it; empty blocks of nodes that are gone, or that no longer
//! match their pool, are released; `BlockAffinity` records follow the blocks.
//!
//! `plan` is a pure function of the inventory; `apply` performs the steps with
//! compare-and-swap writes, so racing an allocator is safe: deleting an empty block is
//! conditional on the revision at which it was seen empty.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use ipnet::IpNet;
use twill_api::datastore::{Datastore, DatastoreError};
use twill_api::resources::{AffinityState, BlockAffinity, BlockAffinitySpec, IPAMBlock, Node};

use crate::allocator::IpamError;
use crate::block::Block;
use crate::inventory::Inventory;
use crate::model::{affinity_name, block_name, block_to_spec};
use crate::plan::{Config, Pool, Reservations, free_block};

/// Node name → labels.
pub type NodeLabels = BTreeMap<String, BTreeMap<String, String>>;

/// Reads every Twill `Node` with its labels.
pub async fn load_nodes(ds: &Datastore) -> Result<NodeLabels, IpamError> {
    Ok(ds
        .list::<Node>(None)
        .await?
        .items
        .into_iter()
        .filter_map(|n| Some((n.metadata.name?, n.metadata.labels.unwrap_or_default())))
        .collect())
}

/// One step of reconciliation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Give `node` a first block of `pool`.
    Claim { node: String, pool: String },
    /// Delete an empty block (at revision `revision`) and its affinity record.
    Release {
        block: IpNet,
        node: Option<String>,
        revision: Option<String>,
    },
    /// Write the missing affinity record of an affine block.
    RecordAffinity { node: String, block: IpNet },
    /// Delete an affinity record whose block is gone or affine elsewhere.
    DropAffinity { name: String },
}

/// Decides the steps that bring blocks in line with nodes and pools.
pub fn plan(inv: &Inventory, nodes: &NodeLabels, config: Config) -> Vec<Step> {
    let mut steps = Vec::new();
    let pools: Vec<&Pool> = inv.pools.iter().map(|(_, p)| p).collect();
    let mut releasing: HashSet<IpNet> = HashSet::new();
    for (object, block) in &inv.blocks {
        let Some(node) = &block.affinity else {
            continue;
        };
        let pool = pools.iter().find(|p| p.owns(&block.cidr));
        let keep = match (nodes.get(node), pool) {
            (Some(labels), Some(pool)) => pool.node_selector.matches(labels),
            _ => false,
        };
        if !keep && block.is_empty() {
            releasing.insert(block.cidr);
            steps.push(Step::Release {
                block: block.cidr,
                node: Some(node.clone()),
                revision: object.metadata.resource_version.clone(),
            });
        }
    }
    for (node, labels) in nodes {
        for pool in &pools {
            if pool.disabled || pool.load_balancer || !pool.node_selector.matches(labels) {
                continue;
            }
            let has_one = inv.blocks.iter().any(|(_, b)| {
                b.is_affine_to(node) && pool.owns(&b.cidr) && !releasing.contains(&b.cidr)
            });
            let own_in_family = inv
                .blocks
                .iter()
                .filter(|(_, b)| {
                    b.is_affine_to(node) && b.cidr.addr().is_ipv4() == pool.cidr.addr().is_ipv4()
                })
                .count() as u32;
            let capped =
                config.max_blocks_per_host > 0 && own_in_family >= config.max_blocks_per_host;
            if !has_one && !capped {
                steps.push(Step::Claim {
                    node: node.clone(),
                    pool: pool.name.clone(),
                });
            }
        }
    }
    let recorded: BTreeSet<(String, IpNet)> = inv
        .affinities
        .iter()
        .filter_map(|a| Some((a.spec.node.clone(), a.spec.cidr.parse().ok()?)))
        .collect();
    for (_, b) in &inv.blocks {
        if let Some(node) = &b.affinity
            && !releasing.contains(&b.cidr)
            && !recorded.contains(&(node.clone(), b.cidr))
        {
            steps.push(Step::RecordAffinity {
                node: node.clone(),
                block: b.cidr,
            });
        }
    }
    for a in &inv.affinities {
        let matches_block = a.spec.cidr.parse::<IpNet>().ok().is_some_and(|cidr| {
            inv.blocks
                .iter()
                .any(|(_, b)| b.cidr == cidr && b.is_affine_to(&a.spec.node))
        });
        if !matches_block && let Some(name) = &a.metadata.name {
            steps.push(Step::DropAffinity { name: name.clone() });
        }
    }
    steps
}

/// What `apply` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Blocks claimed.
    pub claimed: usize,
    /// Blocks released.
    pub released: usize,
    /// Affinity records written or dropped.
    pub affinities: usize,
}

/// Performs `steps`. A lost race skips the step (the next pass re-plans).
pub async fn apply(
    ds: &Datastore,
    inv: &Inventory,
    config: Config,
    reservations: &Reservations,
    steps: Vec<Step>,
) -> Result<Applied, IpamError> {
    let mut done = Applied::default();
    let mut known: Vec<Block> = inv.blocks.iter().map(|(_, b)| b.clone()).collect();
    for step in steps {
        match step {
            Step::Claim { node, pool } => {
                let Some(pool) = inv.pools.iter().map(|(_, p)| p).find(|p| p.name == pool) else {
                    continue;
                };
                if let Some(cidr) =
                    claim_empty(ds, &node, pool, config, reservations, &mut known).await?
                {
                    tracing::info!(%node, %cidr, "claimed a block");
                    done.claimed += 1;
                }
            }
            Step::Release {
                block,
                node,
                revision,
            } => {
                match ds
                    .delete::<IPAMBlock>(None, &block_name(&block), revision.as_deref())
                    .await
                {
                    Ok(_) => {
                        tracing::info!(%block, ?node, "released an empty block");
                        done.released += 1;
                        if let Some(node) = node {
                            drop_affinity(ds, &affinity_name(&node, &block)).await?;
                        }
                    }
                    Err(DatastoreError::Conflict { .. } | DatastoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Step::RecordAffinity { node, block } => {
                let record = BlockAffinity::new(
                    &affinity_name(&node, &block),
                    BlockAffinitySpec {
                        state: AffinityState::Confirmed,
                        node,
                        cidr: block.to_string(),
                        deleted: false,
                    },
                );
                match ds.create(&record).await {
                    Ok(_) => done.affinities += 1,
                    Err(DatastoreError::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Step::DropAffinity { name } => {
                if drop_affinity(ds, &name).await? {
                    done.affinities += 1;
                }
            }
        }
    }
    Ok(done)
}

async fn drop_affinity(ds: &Datastore, name: &str) -> Result<bool, IpamError> {
    match ds.delete::<BlockAffinity>(None, name, None).await {
        Ok(_) => Ok(true),
        Err(DatastoreError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Claims one empty block of `pool` for `node` (CAS create; a lost race moves on to the
/// next free block, bounded).
async fn claim_empty(
    ds: &Datastore,
    node: &str,
    pool: &Pool,
    config: Config,
    reservations: &Reservations,
    known: &mut Vec<Block>,
) -> Result<Option<IpNet>, IpamError> {
    // `plan` matched the node against the pool's selector and checked the cap.
    let mut skip = HashSet::new();
    for _ in 0..16 {
        let all: Vec<&Block> = known.iter().collect();
        let Some(cidr) = free_block(pool, &all, reservations, &skip) else {
            return Ok(None);
        };
        let block = Block::new(cidr, Some(node.to_owned()));
        let object = IPAMBlock::new(
            &block_name(&cidr),
            block_to_spec(&block, config.strict_affinity),
        );
        match ds.create(&object).await {
            Ok(_) => {
                known.push(block);
                let record = BlockAffinity::new(
                    &affinity_name(node, &cidr),
                    BlockAffinitySpec {
                        state: AffinityState::Confirmed,
                        node: node.to_owned(),
                        cidr: cidr.to_string(),
                        deleted: false,
                    },
                );
                match ds.create(&record).await {
                    Ok(_) | Err(DatastoreError::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                return Ok(Some(cidr));
            }
            Err(DatastoreError::AlreadyExists { .. }) => {
                skip.insert(cidr);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Pool;
    use twill_api::resources::{IPPool, IPPoolSpec};
    use twill_api::selector::Selector;

    fn inv_with(pool_sel: &str, blocks: Vec<Block>) -> Inventory {
        let pool = Pool {
            name: "p".into(),
            cidr: "10.244.0.0/24".parse().unwrap(),
            block_len: 26,
            node_selector: Selector::parse(pool_sel).unwrap(),
            disabled: false,
            load_balancer: false,
        };
        let object = IPPool::new("p", IPPoolSpec::default());
        Inventory {
            pools: vec![(object, pool)],
            blocks: blocks
                .into_iter()
                .map(|b| {
                    (
                        IPAMBlock::new(&block_name(&b.cidr), block_to_spec(&b, false)),
                        b,
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    fn nodes(list: &[(&str, &[(&str, &str)])]) -> NodeLabels {
        list.iter()
            .map(|(n, l)| {
                (
                    (*n).to_owned(),
                    l.iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn a_node_without_a_block_gets_a_claim() {
        let inv = inv_with("", vec![]);
        let steps = plan(&inv, &nodes(&[("n1", &[])]), Config::default());
        assert_eq!(
            steps,
            vec![Step::Claim {
                node: "n1".into(),
                pool: "p".into()
            }]
        );
    }

    #[test]
    fn no_node_is_given_a_block_of_a_load_balancer_pool() {
        let mut inv = inv_with("", vec![]);
        inv.pools[0].1.load_balancer = true;
        let steps = plan(&inv, &nodes(&[("n1", &[])]), Config::default());
        assert_eq!(steps, vec![]);
    }

    #[test]
    fn empty_blocks_of_gone_or_unmatched_nodes_are_released_but_used_ones_stay() {
        let gone = Block::new("10.244.0.0/26".parse().unwrap(), Some("gone".into()));
        let mut used = Block::new("10.244.0.64/26".parse().unwrap(), Some("gone".into()));
        used.allocate("h", &Default::default(), &|_| false).unwrap();
        let unmatched = Block::new("10.244.0.128/26".parse().unwrap(), Some("n2".into()));
        let inv = inv_with("zone == 'a'", vec![gone, used, unmatched]);
        let steps = plan(&inv, &nodes(&[("n2", &[("zone", "b")])]), Config::default());
        let released: Vec<IpNet> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Release { block, .. } => Some(*block),
                _ => None,
            })
            .collect();
        assert_eq!(
            released,
            vec![
                "10.244.0.0/26".parse().unwrap(),
                "10.244.0.128/26".parse().unwrap()
            ]
        );
        assert!(!steps.iter().any(|s| matches!(s, Step::Claim { .. })));
    }
}
