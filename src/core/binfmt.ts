// What the host's binfmt_misc runs, as data a plan is made from (parsed in src/guest/binfmt.ts).

/** One registered handler, as its /proc/sys/fs/binfmt_misc/NAME file describes it. */
export interface BinfmtHandler {
  name: string;
  enabled: boolean;
  interpreter: string;
  /** The registration's flags (P, O, C, F); F: the kernel opened the interpreter when it was registered. */
  flags: string;
  /** Magic-number handlers: where the magic starts, and it and its mask as hex; extension handlers have none. */
  offset: number;
  magic: string | null;
  mask: string | null;
}

/** What binfmt_misc says on this host; mounted false: /proc/sys/fs/binfmt_misc has no status file. */
export interface BinfmtFacts {
  mounted: boolean;
  enabled: boolean;
  handlers: BinfmtHandler[];
}
