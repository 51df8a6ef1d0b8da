// img2vm test and the initramfs's LUKS prompt: typed once, and a refusal or a second ask ends the test clearly.
import { describe, expect, it } from 'vitest';
import { LuksPrompt } from '../../src/vm/luks-prompt.js';

describe('the LUKS passphrase prompt on the console', () => {
  it('types the passphrase once, when asked, even with the prompt split over chunks', () => {
    const p = new LuksPrompt('s3cret');
    expect(p.feed('Begin: Running /scripts/local-top ... ')).toEqual({});
    expect(p.feed('Please unlock disk root_')).toEqual({});
    expect(p.feed('crypt: ')).toEqual({ write: 's3cret\n' });
    expect(p.feed('cryptsetup: root_crypt: set up successfully\ndone.\n')).toEqual({});
  });

  it('ends with a clear failure when the passphrase is refused or asked for again', () => {
    const refused = new LuksPrompt('wrong');
    refused.feed('Please unlock disk root_crypt: ');
    expect(refused.feed('No key available with this passphrase.\n').fail?.message).toMatch(/refused/);
    const again = new LuksPrompt('wrong');
    again.feed('Please unlock disk root_crypt: ');
    expect(again.feed('\nPlease unlock disk root_crypt: ').fail?.message).toMatch(/again/);
  });

  it('says to give --luks-password when none was given, instead of waiting', () => {
    const f = new LuksPrompt(undefined).feed('Please unlock disk root_crypt: ');
    expect(f.fail).toMatchObject({
      message: 'the guest asks for a LUKS passphrase',
      hint: expect.stringMatching(/--luks-password/),
    });
  });
});
