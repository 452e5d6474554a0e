// Command kubectl is upstream kubectl's entry point (k8s.io/kubernetes
// cmd/kubectl, without the cloud auth plugins), built from the module proxy
// so that the benchmark can time the seed's kubectl loop on a machine that
// has no kubectl.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	logs.GlogSetter(cmd.GetLogVerbosity(os.Args)) //nolint:errcheck // upstream ignores it too
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
