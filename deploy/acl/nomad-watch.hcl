# Nomad ACL policy "vigie-watch": what every Vigie needs.
#
# Alerts: the event stream's Allocation, Deployment, Evaluation and Job
# topics need read-job, the Node topic node read. With nomad.namespaces =
# ["*"] (the default) Nomad 1.9.6 and later want read-job in *every*
# namespace, and an exact-name namespace block replaces this "*" one rather
# than adding to it: give such a block these capabilities too, or list the
# namespaces to follow in nomad.namespaces.
# The stderr tail quoted under a failed task needs read-logs.
#
# Read commands: status (nodes, running deployments), jobs (list-jobs),
# job (read-job) and logs (read-logs).
#
#   nomad acl policy apply -description "Vigie: alerts and reads" vigie-watch nomad-watch.hcl

namespace "*" {
  capabilities = ["list-jobs", "read-job", "read-logs"]
}

node {
  policy = "read"
}
