# Vigie on Nomad: two instances, one leading (a Consul lock), the other
# waiting to take over. Configuration and secrets come from Consul KV
# (README.md, "Deploying on Nomad", lists the keys), so nothing secret is
# in this file; deploy/jobspec_test.go checks it as `nomad job validate`
# would, and that the configuration it renders is one Vigie accepts.
#
#   nomad job run -var image=registry.example.org/vigie:1.4.0 deploy/vigie.nomad.hcl

# The image to run, pinned by tag or digest: one that Vigie's Dockerfile
# built (non-root, PostgreSQL 17 client tools beside the binary).
variable "image" {
  type        = string
  description = "Vigie's Docker image, e.g. registry.example.org/vigie:1.4.0"
}

locals {
  # Secrets: Consul KV key vigie/secrets/<name> → file /secrets/<name>
  # (tmpfs, 0400, owned by the vigie user), named by the configuration's
  # *_file keys. true: required, the task waits until the key exists;
  # false: optional, an empty file when absent (Vigie refuses an empty file
  # only if its configuration names it). Add a line per extra backup target
  # or Stolon cluster.
  secrets = {
    matrix_password         = true # each instance logs in once with it and keeps its own device
    matrix_pickle_key       = true # encrypts the crypto store (encryption is on by default)
    s3_access_key_id        = true # [ha] replicates the leader's state to the [s3] bucket
    s3_secret_access_key    = true
    consul_token            = false # the lock, health and KV (deploy/acl/consul-*.hcl)
    nomad_token             = false # deploy/acl/nomad-*.hcl
    ldap_bind_password      = false
    garage_admin_token      = false
    backup_main_db_password = false # [[backups.targets]] main-db
    stolon_main_db_password = false # [[stolon.clusters]] main-db
  }
}

job "vigie" {
  # Its own namespace: with Consul workload identities, the role Nomad's
  # tasks get in this namespace is the only one that needs to read
  # vigie/secrets/ (nomad namespace apply vigie).
  namespace   = "vigie"
  type        = "service"
  datacenters = ["*"]
  # Above ordinary jobs: the watcher should be placed before what it watches.
  priority = 70

  group "vigie" {
    # Two instances; the Consul lock decides which one leads, the other
    # takes over within 2 × session_ttl + lock_delay of the leader's death.
    count = 2

    # Never both on one node: losing a node must leave one instance.
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    # Across datacenters too, where there are several (a preference only).
    spread {
      attribute = "${node.datacenter}"
    }

    # Vigie reaches the local Consul and Nomad agents on 127.0.0.1 (the
    # addresses must be the same on both instances: they compare their
    # configurations) and listens on the port Nomad gives it.
    network {
      port "http" {}
    }

    # Consul: health for deployments, discovery for Prometheus (/metrics).
    service {
      name     = "vigie"
      provider = "consul"
      port     = "http"
      tags     = ["metrics"]

      # The process answers. Deployments wait for it; three failures in a
      # row restart the task.
      check {
        name     = "vigie alive"
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"

        check_restart {
          limit = 3
          grace = "30s"
        }
      }

      # Ready: the leader's store, Matrix sync, sources and replication are
      # fine; the standby can campaign. Informational: a standby refusing a
      # configuration that differs from the running leader's (the first
      # half of a rolling update) must not fail the deployment, and a blind
      # source is what Vigie reports, not a reason to restart it.
      check {
        name      = "vigie ready"
        type      = "http"
        path      = "/readyz"
        interval  = "15s"
        timeout   = "5s"
        on_update = "ignore"
      }
    }

    # One instance at a time, the next only once the new one is healthy;
    # a deployment that does not become healthy rolls back by itself.
    update {
      max_parallel      = 1
      health_check      = "checks"
      min_healthy_time  = "20s"
      healthy_deadline  = "3m"
      progress_deadline = "10m"
      auto_revert       = true
    }

    # Node drains likewise move one instance at a time.
    migrate {
      max_parallel     = 1
      health_check     = "checks"
      min_healthy_time = "20s"
      healthy_deadline = "3m"
    }

    # A crash, or the exit that follows a lost leadership, restarts it in
    # place (it then waits as the standby); a crash loop fails the
    # allocation so that it is rescheduled.
    restart {
      attempts = 3
      interval = "5m"
      delay    = "10s"
      mode     = "fail"
    }

    # A failed allocation is replaced, elsewhere if need be, without limit:
    # the job must not end up with one instance.
    reschedule {
      unlimited      = true
      delay          = "30s"
      delay_function = "exponential"
      max_delay      = "5m"
    }

    # The instance's data directory (/alloc/data/vigie): its Matrix device,
    # crypto store and sync position stay with the instance across updates
    # and moves (sticky: same node when possible; migrate: copied when
    # not). Backup verification downloads a dump here: size it for the
    # largest one.
    ephemeral_disk {
      sticky  = true
      migrate = true
      size    = 2048
    }

    task "vigie" {
      driver = "docker"
      # The image's unprivileged user (uid and gid 65532).
      user = "vigie"

      config {
        image        = var.image
        network_mode = "host"
        args         = ["run", "--config", "/local/vigie.toml"]
        # Vigie writes only under /alloc/data/vigie.
        readonly_rootfs = true
      }

      env {
        # Keeps the Go heap clear of the memory limit: pg_dump and
        # pg_restore run beside it in the same cgroup.
        GOMEMLIMIT = "180MiB"
      }

      # Measured: ~25 MB RSS idle, ~70 MB peak on a 10,000-check Consul;
      # a backup adds part_size_mib × parallel_parts (32 MiB) of S3 parts,
      # the zstd encoder and pg_dump (21 MB RSS on 2,000 tables); a
      # verification pg_restore -j 2 (3 × 11 MB). memory_max applies only
      # where memory oversubscription is enabled.
      resources {
        cpu        = 200
        memory     = 256
        memory_max = 512
      }

      # SIGTERM: the leader uploads its last changes and hands the lock to
      # the standby at once; within the clients' default max_kill_timeout.
      kill_timeout = "30s"

      # The configuration: the operator's part from KV (vigie/config.toml,
      # everything but data_dir, [http] and [ha]), framed by what belongs
      # to the deployment. No secret here: the file names them.
      template {
        destination = "local/vigie.toml"
        change_mode = "restart"
        data        = <<-EOT
        # Rendered by Nomad from Consul KV vigie/config.toml: edit it there.
        data_dir = "/alloc/data/vigie"

        {{ key "vigie/config.toml" }}

        [http]
        listen = "{{ env "NOMAD_IP_http" }}:{{ env "NOMAD_PORT_http" }}"

        # Leader election: both instances alike but for their names
        # (node and allocation), which logs and the room show.
        [ha]
        enabled = true
        instance = "{{ env "node.unique.name" }}-{{ env "NOMAD_SHORT_ALLOC_ID" }}"
        lock_key = "vigie/leader"
        session_ttl = "10s"
        lock_delay = "5s"
        replicate_interval = "10s"
        restore_timeout = "1m"
        EOT
      }

      # The secrets, one file each (see locals above).
      dynamic "template" {
        for_each = local.secrets
        content {
          data        = template.value ? "{{ key \"vigie/secrets/${template.key}\" }}" : "{{ keyOrDefault \"vigie/secrets/${template.key}\" \"\" }}"
          destination = "secrets/${template.key}"
          perms       = "0400"
          uid         = 65532
          gid         = 65532
          change_mode = "restart"
        }
      }
    }
  }
}
