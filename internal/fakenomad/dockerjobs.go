package fakenomad

import (
	"time"

	"github.com/hashicorp/nomad/api"
)

// Images of the jobs below.
const (
	ShopImage     = "registry.example.org/shop/app:1.4.2"
	ProxyImage    = "nginx:1.27"
	CheckoutImage = "registry.example.org/checkout/api:2.0.0"
)

// ShopJob is a docker service job the capture lacks, to add with AddJob:
// job "shop", group "frontend" (count 2: tasks "app" on ShopImage and
// "proxy" on ProxyImage) and group "worker" (count 1: task "worker" on
// ShopImage and a raw_exec task "logrotate"), rolling one at a time with
// auto_revert.
func ShopJob() api.Job {
	job := api.NewServiceJob("shop", "shop", "global", 50)
	job.AddDatacenter("dc1")
	job.Update = &api.UpdateStrategy{MaxParallel: new(1), AutoRevert: new(true), HealthCheck: new("checks"),
		MinHealthyTime: new(5 * time.Second), HealthyDeadline: new(time.Minute), ProgressDeadline: new(2 * time.Minute)}
	job.AddTaskGroup(api.NewTaskGroup("frontend", 2).
		AddTask(dockerTask("app", ShopImage)).
		AddTask(dockerTask("proxy", ProxyImage)))
	job.AddTaskGroup(api.NewTaskGroup("worker", 1).
		AddTask(dockerTask("worker", ShopImage)).
		AddTask(api.NewTask("logrotate", "raw_exec").SetConfig("command", "/usr/sbin/logrotate")))
	return *job
}

// CanaryJob is a docker service job deploying a canary first, promoted by
// hand: job "checkout", group "checkout" (count 3: task "api" on
// CheckoutImage).
func CanaryJob() api.Job {
	job := api.NewServiceJob("checkout", "checkout", "global", 50)
	job.AddDatacenter("dc1")
	job.Update = &api.UpdateStrategy{MaxParallel: new(1), Canary: new(1), AutoPromote: new(false)}
	job.AddTaskGroup(api.NewTaskGroup("checkout", 3).AddTask(dockerTask("api", CheckoutImage)))
	return *job
}

func dockerTask(name, image string) *api.Task {
	return api.NewTask(name, "docker").SetConfig("image", image).SetConfig("ports", []string{"http"}).
		Require(&api.Resources{CPU: new(100), MemoryMB: new(128)})
}
