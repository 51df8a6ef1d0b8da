// img2vm test and the initramfs's LUKS prompt: typed once, and a refusal or a second ask ends the test clearly.
import { describe, expect, it } from 'vitest';
import { LuksPrompt } from '../../src/vm/luks-prompt.js';

describe('the LUKS passphrase prompt on the console', () => {
  it('types the passphrase once, when asked, even with the prompt split over chunks', () => {
    const p = new LuksPrompt('s3cret');
    expect(p.feed('Begin: Running /scripts/local-top ... ')).toEqual({});
    expect(p.feed('Please unlock disk root_')).toEqual({});
    expect(p.feed('crypt: ')).toEqual({ write: 's3cret\n' });
    // the volume is open: nothing more to watch for (img2vm run stops holding output back)
    expect(p.feed('cryptsetup: root_crypt: set up successfully\ndone.\n')).toEqual({ done: true });
  });

  it('ends with a clear failure when the passphrase is refused or asked for again', () => {
    const refused = new LuksPrompt('wrong');
    refused.feed('Please unlock disk root_crypt: ');
    expect(refused.feed('No key available with this passphrase.\n').fail?.message).toMatch(/refused/);
    const again = new LuksPrompt('wrong');
    again.feed('Please unlock disk root_crypt: ');
    expect(again.feed('\nPlease unlock disk root_crypt: ').fail?.message).toMatch(/again/);
  });

  it("answers img2vm's own init the same way, and is done once the volume is open", () => {
    const p = new LuksPrompt('pw');
    expect(p.feed('Please unlock disk root (LUKS2 UUID=6c1d2f3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f): ')).toEqual({
      write: 'pw\n',
    });
    expect(
      p.feed('\r\nimg2vm-init: LUKS2 volume 6c1d2f3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f unlocked with keyslot 0'),
    ).toEqual({
      done: true,
    });
    const wrong = new LuksPrompt('pw');
    wrong.feed('Please unlock disk root (LUKS2 UUID=6c1d2f3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f): ');
    expect(wrong.feed('img2vm-init: No key available with this passphrase (try 1 of 3).\r\n').fail?.message).toMatch(
      /refused/,
    );
  });

  it("answers Alpine's nlplug-findfs and dracut's systemd password agent", () => {
    const alpine = new LuksPrompt('pw');
    expect(alpine.feed('Enter passphrase for /dev/')).toEqual({});
    expect(alpine.feed('vda2: ')).toEqual({ write: 'pw\n' });
    expect(alpine.feed('No key available with this passphrase.\n').fail?.message).toMatch(/refused/);
    // dracut's cryptroot-ask (no systemd-cryptsetup in the initramfs) lets cryptsetup ask.
    expect(new LuksPrompt('pw').feed('Enter passphrase for /dev/disk/by-uuid/6c1d2f3e-4b5a: ')).toEqual({
      write: 'pw\n',
    });
    const dracut = new LuksPrompt('pw');
    expect(dracut.feed('Please enter passphrase for disk luks-6c1d2f3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f: ')).toEqual({
      write: 'pw\n',
    });
  });

  it('says to give --luks-password when none was given, instead of waiting', () => {
    const f = new LuksPrompt(undefined).feed('Please unlock disk root_crypt: ');
    expect(f.fail).toMatchObject({
      message: 'the guest asks for a LUKS passphrase',
      hint: expect.stringMatching(/--luks-password/),
    });
  });
});
