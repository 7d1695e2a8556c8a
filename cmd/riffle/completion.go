package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// completeCmd is the hidden command the completion scripts call with the
// words of the command line; it prints the candidates for the last word,
// one per line.
const completeCmd = "__complete"

// completionScripts are the shell functions that ask riffle for candidates.
var completionScripts = map[string]string{
	"bash": `# bash completion for riffle; load with: source <(riffle completion bash)
_riffle() {
    local IFS=$'\n'
    COMPREPLY=($(riffle ` + completeCmd + ` "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _riffle riffle
`,
	"zsh": `#compdef riffle
# zsh completion for riffle; load with: source <(riffle completion zsh)
_riffle() {
    local -a candidates
    candidates=("${(@f)$(riffle ` + completeCmd + ` "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    compadd -a candidates
}
compdef _riffle riffle
`,
	"fish": `# fish completion for riffle; load with: riffle completion fish | source
complete -c riffle -f -a '(riffle ` + completeCmd + ` (commandline -opc)[2..-1] (commandline -ct) 2>/dev/null)'
`,
}

func completionCmd(r *cmdSpec) *cmdSpec {
	return &cmdSpec{
		name:     "completion",
		summary:  "print a shell completion script (bash, zsh or fish)",
		synopsis: "bash|zsh|fish",
		about: []string{"Prints a script that completes riffle's commands, subcommands, flags and the values of " +
			"flags with a fixed set of values. The script asks riffle itself for candidates, so it stays current " +
			"as riffle changes. riffle broker's flags are not completed."},
		examples: []string{
			"source <(riffle completion bash)          # in ~/.bashrc",
			"riffle completion zsh > \"${fpath[1]}/_riffle\"",
			"riffle completion fish > ~/.config/fish/completions/riffle.fish",
		},
		values:   []string{"bash", "zsh", "fish"},
		textOnly: true,
		setup: func(*flag.FlagSet) runFunc {
			return func(_ context.Context, o *output, args []string) error {
				if len(args) != 1 {
					return errors.New("completion: name one shell: bash, zsh or fish")
				}
				script, ok := completionScripts[args[0]]
				if !ok {
					return fmt.Errorf("completion: unknown shell %q: bash, zsh or fish", args[0])
				}
				_, err := io.WriteString(o.stdout, script)
				return err
			}
		},
	}
}

// complete prints the candidates for the last of words.
func complete(w io.Writer, words []string) error {
	c := root()
	if len(words) > 0 && words[len(words)-1] == "" && len(words) == 1 {
		words = nil
	}
	out := c.candidates(words)
	if len(out) == 0 {
		return nil
	}
	_, err := io.WriteString(w, strings.Join(out, "\n")+"\n")
	return err
}
