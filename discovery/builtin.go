package discovery

import "strings"

//go:generate sh -c "cd ../tools/kubectl-commands && KUBECTL_VERSION=v0.37.2 go run . > ../../discovery/kubectl_commands.go"

// builtinCommand is one of kubectl's own commands.
type builtinCommand struct {
	names       []string // name, then aliases
	subcommands []builtinCommand
}

// overwrittenCommand returns the kubectl command a plugin file would
// overwrite ("kubectl get"), or "". It follows kubectl's own check: the
// file name split at "-" is looked up as a command path, and the deepest
// built-in command found is the one overwritten.
func overwrittenCommand(fileName string) string {
	parts := strings.Split(fileName, "-")[1:] // the first part is "kubectl"
	level := kubectlCommands
	var path []string
	for _, part := range parts {
		next := findCommand(level, part)
		if next == nil {
			break
		}
		path = append(path, next.names[0])
		level = next.subcommands
	}
	if len(path) == 0 {
		return ""
	}
	return "kubectl " + strings.Join(path, " ")
}

func findCommand(cmds []builtinCommand, name string) *builtinCommand {
	for i := range cmds {
		for _, n := range cmds[i].names {
			if n == name {
				return &cmds[i]
			}
		}
	}
	return nil
}
