package backups

// StoredObject is one object that Storage.List returns: exported so that
// other packages keeping objects in the bucket (replica, the HA state
// replication) can declare the part of Storage they use as an interface.
type StoredObject = storedObject
