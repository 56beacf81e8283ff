//! [`RecordIndex`]: every record of the cluster zone at one state generation, and the
//! authoritative lookup over it.
//!
//! Invariants:
//! - The index is immutable once built; a change in the cluster builds a new one, which the
//!   server swaps in whole, so one query never sees two generations.
//! - Every name that exists in the zone is a key of `names`, including empty non-terminals
//!   (ancestors of a name with records, which answer NODATA, not NXDOMAIN). The only names
//!   not stored are the pod names `<a-b-c-d>.<ns>.pod.<zone>`, synthesized on lookup, and the
//!   two levels above them.
//! - Keys are lowercase and [`Name`] compares case-insensitively, so lookups need no
//!   lowercasing; answers carry the owner name as the question spelled it.
//! - Every negative answer (NXDOMAIN, NODATA) carries the SOA of the zone it is in.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::RECORD_TTL;
use super::names::{parse_dashed, parse_reverse, relative_labels};
use crate::net::Cidr;

/// CNAMEs followed inside the index before the answer stops with what it has.
const MAX_CNAME_CHAIN: usize = 8;

/// The records of the cluster zone and of the reverse names of its addresses.
#[derive(Clone, Debug)]
pub struct RecordIndex {
    pub(super) zone: Name,
    /// The zone apex SOA, in the authority section of negative answers inside the zone.
    pub(super) soa: Record,
    /// The SOA of negative IPv4 reverse answers (owner `in-addr.arpa.`).
    pub(super) reverse_soa: Record,
    /// The SOA of negative IPv6 reverse answers (owner `ip6.arpa.`).
    pub(super) reverse6_soa: Record,
    /// Address ranges whose reverse names are answered here even without a PTR (NXDOMAIN).
    pub(super) reverse_ranges: Vec<Cidr>,
    /// Every existing name (zone and reverse) with its records; empty for a non-terminal.
    pub(super) names: HashMap<Name, Vec<Record>>,
    pub(super) generation: u64,
}

/// An authoritative answer: response code and the three record sections.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

impl RecordIndex {
    /// The cluster zone (`cluster.local.`).
    pub fn zone(&self) -> &Name {
        &self.zone
    }

    /// The state generation the index was built from.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// How many records are stored (pod records, synthesized on demand, not counted).
    pub fn record_count(&self) -> usize {
        self.names.values().map(Vec::len).sum()
    }

    /// The answer to `qtype` at `name`, or `None` when the name lies outside every zone this
    /// index is authoritative for (the caller refuses or forwards it).
    pub fn lookup(&self, name: &Name, qtype: RecordType) -> Option<Answer> {
        let mut soa = self.authority_for(name)?;
        let mut answer = Answer::default();
        let mut owner = name.clone();
        for _ in 0..MAX_CNAME_CHAIN {
            let Some(records) = self.records_at(&owner) else {
                answer.code = ResponseCode::NXDomain;
                answer.authorities.push(soa.clone());
                return Some(answer);
            };
            let alias = records.iter().find_map(|r| match &r.data {
                RData::CNAME(target) if !matches!(qtype, RecordType::CNAME | RecordType::ANY) => {
                    Some((r, target.0.clone()))
                }
                _ => None,
            });
            if let Some((record, target)) = alias {
                answer.answers.push(with_owner(record, &owner));
                match self.authority_for(&target) {
                    Some(target_soa) => {
                        soa = target_soa;
                        owner = target;
                        continue;
                    }
                    None => return Some(answer),
                }
            }
            let matching: Vec<&Record> = records
                .iter()
                .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
                .collect();
            if matching.is_empty() {
                answer.authorities.push(soa.clone());
            }
            answer.additionals = self.additionals_for(&matching);
            answer
                .answers
                .extend(matching.into_iter().map(|r| with_owner(r, &owner)));
            return Some(answer);
        }
        Some(answer)
    }

    /// Whether [`RecordIndex::lookup`] answers for `name` (it is not refused or forwarded).
    pub fn answers_for(&self, name: &Name) -> bool {
        self.authority_for(name).is_some()
    }

    /// The SOA of the zone `name` belongs to here, `None` when this index does not answer for
    /// it: the cluster zone, and the full reverse names of published or in-range addresses.
    fn authority_for(&self, name: &Name) -> Option<&Record> {
        if self.zone.zone_of(name) {
            return Some(&self.soa);
        }
        let ip = parse_reverse(name)?;
        let ours =
            self.names.contains_key(name) || self.reverse_ranges.iter().any(|r| r.contains(ip));
        let soa = if ip.is_ipv4() {
            &self.reverse_soa
        } else {
            &self.reverse6_soa
        };
        ours.then_some(soa)
    }

    /// The records at `name`, `None` when it does not exist; pod names are synthesized.
    fn records_at(&self, name: &Name) -> Option<Cow<'_, [Record]>> {
        if let Some(records) = self.names.get(name) {
            return Some(Cow::Borrowed(records));
        }
        let labels = relative_labels(name, &self.zone)?;
        match labels.as_slice() {
            [pod] | [_, pod] if pod.eq_ignore_ascii_case(b"pod") => Some(Cow::Borrowed(&[])),
            [address, _, pod] if pod.eq_ignore_ascii_case(b"pod") => {
                let data = match parse_dashed(address)? {
                    IpAddr::V4(v4) => RData::A(A(v4)),
                    IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
                };
                let record = Record::from_rdata(name.to_lowercase(), RECORD_TTL, data);
                Some(Cow::Owned(vec![record]))
            }
            _ => None,
        }
    }

    /// The stored A and AAAA records of the names the SRV and NS records in `records` point
    /// at, each target once.
    fn additionals_for(&self, records: &[&Record]) -> Vec<Record> {
        let mut seen = HashSet::new();
        let mut additionals = Vec::new();
        for record in records {
            let target = match &record.data {
                RData::SRV(srv) => &srv.target,
                RData::NS(ns) => &ns.0,
                _ => continue,
            };
            if !seen.insert(target) {
                continue;
            }
            let addresses = self.names.get(target).into_iter().flatten();
            additionals.extend(
                addresses
                    .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
                    .cloned(),
            );
        }
        additionals
    }
}

/// `record` owned by `owner` (the question's spelling of the same name).
fn with_owner(record: &Record, owner: &Name) -> Record {
    let mut record = record.clone();
    record.name = owner.clone();
    record
}
