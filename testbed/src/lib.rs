//! The netns cluster-in-a-box (nodes, pods, underlay, external host, scenarios).
