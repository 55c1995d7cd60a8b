//! Real processes and network namespaces on one machine: guards that remove what they made.
