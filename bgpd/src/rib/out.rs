//! One peer's Adj-RIB-Out: what we last advertised, so that only differences are sent.

use std::collections::HashMap;
use std::sync::Arc;

use ipnet::IpNet;

use crate::packet::PathAttributes;

#[derive(Debug, Default)]
pub struct AdjRibOut {
    sent: HashMap<IpNet, Arc<PathAttributes>, foldhash::fast::RandomState>,
}

impl AdjRibOut {
    /// Records an advertisement; returns false when exactly this was already sent.
    pub fn advertise(&mut self, prefix: IpNet, attrs: Arc<PathAttributes>) -> bool {
        match self.sent.insert(prefix, attrs.clone()) {
            Some(old) => !(Arc::ptr_eq(&old, &attrs) || *old == *attrs),
            None => true,
        }
    }

    /// Records a withdrawal; returns whether the prefix had been advertised.
    pub fn withdraw(&mut self, prefix: &IpNet) -> bool {
        self.sent.remove(prefix).is_some()
    }

    pub fn len(&self) -> usize {
        self.sent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&IpNet, &Arc<PathAttributes>)> {
        self.sent.iter()
    }

    pub fn clear(&mut self) {
        self.sent.clear();
    }
}
