# Consul ACL policy "vigie-stolon": a Stolon cluster's keys, for the
# [[stolon.clusters]] entry named "main" with the default store prefix
# (stolon/cluster; change both to match stolon's --store-prefix and
# --cluster-name). One key_prefix block per cluster.
#
# "read" is enough to watch the cluster (db status, the stolon-* alerts):
# Vigie reads clusterdata, keepers/info/, sentinels/info/, proxies/info/
# and sentinel-leader with blocking queries. "write" is what failover
# needs: it sets forceFail in clusterdata with a check-and-set, as
# stolonctl failkeeper does, and clears it again if no sentinel acts.
# Give it to the cluster's token_file, or to the [consul] token.
#
#   consul acl policy create -name vigie-stolon -description "Vigie: Stolon" -rules @consul-stolon.hcl

key_prefix "stolon/cluster/main/" {
  policy = "write"
}
