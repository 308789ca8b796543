using System.Runtime.InteropServices;
using XenShare.Rings;

namespace XenShare.Tests.Rings;

/// <summary>RG01: the layout of ring.h's shared ring (the C oracle for these numbers is AbiHeaderTests' ring facts).</summary>
public sealed class SharedRingLayoutTests
{
    [Fact]
    public void RG01_header_fields_sit_at_0_4_8_12_and_entries_start_at_64()
    {
        Assert.Equal(0, SharedRingLayout.RequestProducerOffset);
        Assert.Equal(4, SharedRingLayout.RequestEventOffset);
        Assert.Equal(8, SharedRingLayout.ResponseProducerOffset);
        Assert.Equal(12, SharedRingLayout.ResponseEventOffset);
        Assert.Equal(64, SharedRingLayout.HeaderSize);
        Assert.Equal(64, SharedRingLayout.EntryOffset(0, 32, 64));
        Assert.Equal(64 + 31 * 64, SharedRingLayout.EntryOffset(31, 32, 64));
        Assert.Equal(64, SharedRingLayout.EntryOffset(32, 32, 64));
        Assert.Equal(64 + 31 * 64, SharedRingLayout.EntryOffset(uint.MaxValue, 32, 64));
    }

    [Theory]
    [InlineData(4096, 64, 32)]      // displif, blkif-sized entries: one page
    [InlineData(4096, 8, 256)]
    [InlineData(4096, 112, 32)]     // 36 fit, rounded down to a power of two
    [InlineData(4096, 4032, 1)]
    [InlineData(4096, 4033, 0)]
    [InlineData(8192, 64, 64)]      // two pages
    [InlineData(3 * 4096, 24, 256)] // three pages: 509 fit
    [InlineData(16384, 64, 128)]    // four pages: 255 fit
    [InlineData(64, 1, 0)]
    public void RG01_entry_count_is_the_largest_power_of_two_that_fits(int bytes, int entrySize, int expected)
    {
        Assert.Equal(expected, SharedRingLayout.EntryCount(bytes, entrySize));
    }

    [Fact]
    public void RG01_initialize_sets_producers_0_events_1_and_zeroes_the_padding()
    {
        byte[] page = new byte[4096];
        page.AsSpan().Fill(0xAB);
        SharedRingLayout.Initialize(page);
        Assert.Equal(0u, MemoryMarshal.Read<uint>(page.AsSpan(0)));
        Assert.Equal(1u, MemoryMarshal.Read<uint>(page.AsSpan(4)));
        Assert.Equal(0u, MemoryMarshal.Read<uint>(page.AsSpan(8)));
        Assert.Equal(1u, MemoryMarshal.Read<uint>(page.AsSpan(12)));
        Assert.All(page.AsSpan(16, 48).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(0xAB, page[64]);   // entries untouched
    }

    [Theory]
    [InlineData(4096, 64)]
    [InlineData(4096, 24)]
    [InlineData(3 * 4096, 24)]
    [InlineData(2 * 4096, 200)]
    public void RG01_requests_land_in_their_slots_and_never_past_the_ring(int bytes, int entrySize)
    {
        using var memory = new GuardedMemory(bytes / 4096);
        var front = FrontRing.Initialize(memory.Address, memory.Length, entrySize);
        var back = new BackRing(memory.Address, memory.Length, entrySize);
        int count = front.EntryCount;
        Assert.Equal(SharedRingLayout.EntryCount(bytes, entrySize), count);
        Assert.True(64 + count * entrySize <= bytes);

        byte[] request = new byte[entrySize];
        byte[] copy = new byte[entrySize];
        for (int round = 0; round < 3; round++)
        {
            for (int i = 0; i < count; i++)
            {
                request.AsSpan().Fill((byte)(i + round));
                request.CopyTo(front.NextRequest());
                front.CommitRequest();
            }

            Assert.True(front.IsFull);
            Assert.Throws<InvalidOperationException>(() => front.NextRequest());
            front.PushRequests();
            for (int i = 0; i < count; i++)
            {
                int slot = 64 + i * entrySize;
                Assert.Equal((byte)(i + round), memory.Span[slot]);
                Assert.Equal((byte)(i + round), memory.Span[slot + entrySize - 1]);
                Assert.True(back.TryConsumeRequest(copy));
                Assert.Equal((byte)(i + round), copy[entrySize - 1]);
                copy.CopyTo(back.NextResponse());
                back.CommitResponse();
            }

            back.PushResponses();
            for (int i = 0; i < count; i++)
                Assert.True(front.TryConsumeResponse(copy));
            Assert.False(front.TryConsumeResponse(copy));
        }
    }

    [Fact]
    public void RG01_a_ring_too_small_for_one_entry_is_rejected()
    {
        using var memory = new GuardedMemory(1);
        Assert.Throws<ArgumentOutOfRangeException>(() => new FrontRing(memory.Address, 100, 64));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BackRing(memory.Address, 4096, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BackRing(0, 4096, 64));
    }
}
