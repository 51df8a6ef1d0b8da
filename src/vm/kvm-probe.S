/* Source of KVM_PROBE in accel.ts: a multiboot kernel that proves a KVM guest can run, and run at speed.
 *
 * Some hosts (nested virtualisation, emulated /dev/kvm) open /dev/kvm and even run real-mode firmware,
 * but hang or crawl once a kernel enables long mode and touches memory. So the probe does what a kernel
 * does first: enter long mode with paging, then write 16 MiB, then exit QEMU through isa-debug-exit
 * (exit status (0x10 << 1) | 1 = 33). Under TCG it takes ~0.2 s; a working KVM is faster still.
 *
 * Rebuild: as --32 -o p.o kvm-probe.S && objcopy -O binary p.o p.bin && xxd -p p.bin
 */
    .code32
    .set LOAD, 0x100000
    .globl _start
_start:
hdr:                                    /* multiboot v1 header; flag 16: load addresses given here */
    .long 0x1BADB002
    .long 0x00010000
    .long -(0x1BADB002 + 0x00010000)
    .long LOAD + (hdr - _start)         /* header_addr */
    .long LOAD                          /* load_addr */
    .long 0                             /* load_end_addr: whole file */
    .long 0                             /* bss_end_addr: none */
    .long LOAD + (entry - _start)       /* entry_addr */
entry:
    cli
    mov $0x200000, %edi                 /* PML4, PDPT, PD at 2 MiB: zero 12 KiB */
    xor %eax, %eax
    mov $3072, %ecx
    rep stosl
    movl $0x201003, 0x200000            /* PML4[0] -> PDPT */
    movl $0x202003, 0x201000            /* PDPT[0] -> PD */
    mov $0x202000, %edi                 /* PD: identity-map 1 GiB with 2 MiB pages */
    mov $0x83, %eax
    mov $512, %ecx
1:  mov %eax, (%edi)
    add $0x200000, %eax
    add $8, %edi
    loop 1b
    mov $0x200000, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x20, %eax                      /* PAE */
    mov %eax, %cr4
    mov $0xC0000080, %ecx               /* EFER.LME */
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax                /* PG | PE */
    mov %eax, %cr0
    lgdt LOAD + (gdtr - _start)
    ljmp $0x08, $(LOAD + (long64 - _start))
    .code64
long64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov $0x400000, %rdi                 /* write 16 MiB from 4 MiB */
    xor %rax, %rax
    mov $(16 * 131072), %rcx
    rep stosq
    mov $0xf4, %dx                      /* isa-debug-exit */
    mov $0x10, %eax
    out %eax, %dx
2:  hlt
    jmp 2b
    .align 8
gdt:
    .quad 0
    .quad 0x00af9a000000ffff            /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff            /* 0x10: data */
gdtr:
    .word 23
    .long LOAD + (gdt - _start)
