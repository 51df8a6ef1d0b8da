// VMware's VMDK, as one sparse file (monolithicSparse), which VMware products and VirtualBox open directly.
import { qemuImgFormat } from './qemu-img.js';

export const vmdk = qemuImgFormat('vmdk', ['.vmdk'], 'vmdk', 'subformat=monolithicSparse');
