// `vfiokit completion bash|zsh|fish`: a completion script built from the
// command tree itself, so it never lists a command or option that is gone.
// Install: `vfiokit completion bash > /etc/bash_completion.d/vfiokit`,
// `vfiokit completion zsh > "${fpath[1]}/_vfiokit"`,
// `vfiokit completion fish > ~/.config/fish/completions/vfiokit.fish`.
import { Command, Argument } from 'commander';
import { action, RunState, withExamples } from '../program';

interface Entry {
  readonly path: string;
  readonly description: string;
  readonly options: readonly { readonly flags: readonly string[]; readonly description: string }[];
  readonly subcommands: readonly string[];
}

function entries(cmd: Command, prefix = ''): Entry[] {
  const path = prefix === '' ? '' : prefix;
  const own: Entry = {
    path,
    description: cmd.description(),
    options: cmd.options.map((o) => ({ flags: [o.short, o.long].filter((f): f is string => f !== undefined), description: o.description })),
    subcommands: cmd.commands.map((c) => c.name()).filter((n) => n !== 'help'),
  };
  return [own, ...cmd.commands.filter((c) => c.name() !== 'help').flatMap((c) => entries(c, `${prefix}${prefix ? ' ' : ''}${c.name()}`))];
}

const q = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;

export function bashCompletion(root: Command): string {
  const all = entries(root);
  const cases = all
    .map((e) => `    ${q(e.path)}) words=${q([...e.subcommands, ...e.options.flatMap((o) => o.flags), ...all[0]!.options.flatMap((o) => o.flags)].join(' '))} ;;`)
    .join('\n');
  return `# bash completion for vfiokit (vfiokit completion bash)
_vfiokit() {
  local cur path="" w words
  cur="\${COMP_WORDS[COMP_CWORD]}"
  for w in "\${COMP_WORDS[@]:1:COMP_CWORD-1}"; do
    case "$w" in -*) ;; *) case " $(_vfiokit_subs "$path") " in *" $w "*) path="\${path:+$path }$w" ;; esac ;; esac
  done
  case "$path" in
${cases}
  esac
  COMPREPLY=( $(compgen -W "$words" -- "$cur") )
  [ \${#COMPREPLY[@]} -eq 0 ] && COMPREPLY=( $(compgen -f -- "$cur") )
}
_vfiokit_subs() {
  case "$1" in
${all.map((e) => `    ${q(e.path)}) echo ${q(e.subcommands.join(' '))} ;;`).join('\n')}
  esac
}
complete -F _vfiokit vfiokit
`;
}

export function zshCompletion(root: Command): string {
  return `#compdef vfiokit
# zsh completion for vfiokit (vfiokit completion zsh); uses bash's through bashcompinit.
autoload -U +X bashcompinit && bashcompinit
${bashCompletion(root).split('\n').filter((l) => !l.startsWith('#')).join('\n')}`;
}

export function fishCompletion(root: Command): string {
  const lines = ['# fish completion for vfiokit (vfiokit completion fish)', 'complete -c vfiokit -f'];
  for (const e of entries(root)) {
    const words = e.path === '' ? [] : e.path.split(' ');
    const cond = words.length === 0 ? '__fish_use_subcommand' : `__fish_seen_subcommand_from ${words[words.length - 1]}`;
    for (const s of e.subcommands) {
      const sub = root.commands.find((c) => c.name() === s) ?? entriesCommand(root, [...words, s]);
      lines.push(`complete -c vfiokit -n ${q(cond)} -a ${q(s)} -d ${q(sub?.description() ?? '')}`);
    }
    for (const o of e.options) {
      const long = o.flags.find((f) => f.startsWith('--'))?.slice(2);
      const short = o.flags.find((f) => /^-[^-]/.test(f))?.slice(1);
      lines.push(`complete -c vfiokit -n ${q(words.length === 0 ? 'true' : cond)}${long ? ` -l ${long}` : ''}${short ? ` -s ${short}` : ''} -d ${q(o.description)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

function entriesCommand(root: Command, path: readonly string[]): Command | undefined {
  let c: Command | undefined = root;
  for (const p of path) c = c?.commands.find((x) => x.name() === p);
  return c;
}

export function completionCommand(state: RunState): Command {
  const cmd = new Command('completion')
    .description('print a shell completion script for bash, zsh or fish')
    .addArgument(new Argument('<shell>', 'the shell').choices(['bash', 'zsh', 'fish']))
    .action(
      action(state, (ctx, shell: 'bash' | 'zsh' | 'fish') => {
        let root: Command = cmd;
        while (root.parent) root = root.parent;
        const text = { bash: bashCompletion, zsh: zshCompletion, fish: fishCompletion }[shell](root);
        ctx.out.result({ shell, script: text }, () => text);
      }),
    );
  return withExamples(cmd, 'vfiokit completion bash', 'vfiokit completion fish');
}
