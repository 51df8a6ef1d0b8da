// Answers the initramfs asking for the LUKS passphrase on the serial console, once; a second ask means it was wrong.
//
// Debian's cryptroot asks "Please unlock disk NAME: " and, after a refused passphrase, says so and asks again: the
// test ends there with a clear message instead of waiting for its timeout (or for cryptroot's retries to run out).
// img2vm's own init (native/unlock.c) asks and refuses in the same words. `img2vm test` and `img2vm run` both use it.

/**
 * What the initramfs prints when it wants the passphrase: Debian's askpass, systemd's password agent (dracut on the
 * RHEL family), cryptsetup's own prompt (dracut's cryptroot-ask) and Alpine's nlplug-findfs, which both say
 * "Enter passphrase for /dev/X: " and refuse in cryptsetup's words.
 */
const PROMPT =
  /(Please unlock disk [^\n:]*:|Please enter passphrase for disk [^\n]*[:!]|Enter passphrase for \/dev\/\S+:)\s*$/;
const REFUSED = /No key available with this passphrase|bad password or options|cryptsetup failed/;
/** The volume is open (img2vm's init; Debian's cryptroot): nothing more to answer or watch for. */
const UNLOCKED = /LUKS2 volume \S+ unlocked|cryptsetup: \S+: set up successfully/;

export type LuksStep = { write?: string; fail?: { message: string; hint: string }; done?: true };

export class LuksPrompt {
  private tail = '';
  private answered = false;

  constructor(private readonly passphrase: string | undefined) {}

  /** Feeds console text; says what to type, or why the boot cannot go on. */
  feed(text: string): LuksStep {
    this.tail = (this.tail + text).slice(-2000);
    if (this.answered && UNLOCKED.test(this.tail)) return { done: true };
    if (this.answered && REFUSED.test(this.tail))
      return {
        fail: {
          message: 'the LUKS passphrase was refused by the guest',
          hint: 'give the passphrase the disk was converted with (--luks-password)',
        },
      };
    if (!PROMPT.test(this.tail)) return {};
    if (this.passphrase === undefined)
      return {
        fail: {
          message: 'the guest asks for a LUKS passphrase',
          hint: 'give it with --luks-password (or --luks-password-file)',
        },
      };
    if (this.answered)
      return {
        fail: {
          message: 'the guest asked for the LUKS passphrase again: the one given was refused',
          hint: 'give the passphrase the disk was converted with (--luks-password)',
        },
      };
    this.answered = true;
    this.tail = '';
    return { write: `${this.passphrase}\n` };
  }
}
