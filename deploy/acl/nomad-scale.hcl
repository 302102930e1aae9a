# Nomad ACL policy "vigie-scale", with vigie-watch: the scale command.
#
# scale sets a group's count through Nomad's scaling endpoint, which
# scale-job allows without the right to change anything else in the job.
#
#   nomad acl policy apply -description "Vigie: scale" vigie-scale nomad-scale.hcl

namespace "*" {
  capabilities = ["scale-job"]
}
