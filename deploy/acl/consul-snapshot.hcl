# Consul ACL policy "vigie-snapshot": backups of Consul (a [[backups.targets]]
# of kind "consul").
#
# Saving a snapshot reads everything, secrets included, so Consul asks for
# acl = "write" (what its snapshot endpoint checks): give it to a token of
# its own, in the target's token_file, not to the watchers' token.
#
# Nomad has no policy for its snapshot: only a management token saves one
# (nomad acl token create -type management), in the nomad target's token_file.
#
#   consul acl policy create -name vigie-snapshot -description "Vigie: snapshots" -rules @consul-snapshot.hcl

acl = "write"
