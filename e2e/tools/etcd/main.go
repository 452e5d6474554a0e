// Command etcd is upstream etcd's server entry point, built from the module
// proxy so that the e2e tests need nothing downloaded from elsewhere.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
